"""The microscope's static site: a model's units, one page per layer and one per unit.

Written from the files the shards left (:mod:`featviz.tools.microscope_files`), so it can be
rebuilt at any time, from any launcher's sweep, while shards still run (it shows what is
done). Every image is copied into the site, so the folder is self-contained: it opens from
a ``file://`` URL, offline, and still works after being copied elsewhere. Layout::

    site/index.html                         model, layers, units done, time spent
    site/layers/<layer>/index.html          every unit's tile, sortable by a metric
    site/layers/<layer>/<unit>.html         image, facets, dataset examples, metrics
    site/layers/<layer>/img/<unit>.*.png    the images, byte for byte as the shard saved them
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from featviz.errors import DatasetError
from featviz.tools.html_page import document, figures
from featviz.tools.microscope_files import IMAGES, SHARD_NAME, UNITS_DIR, UnitEntry, read_units, shard_folders
from featviz.rundir import read_json

SITE_DIR = "site"
TILE_PX = 96  # shown side of a tile on a layer page
UNIT_PX = 256  # shown side of the unit's image on its page

STYLE = """
.tiles { display: flex; flex-wrap: wrap; gap: 6px; } .tile { width: %dpx; text-decoration: none; color: #333; font-size: 0.75em; }
.tile img, .big, .facets img { image-rendering: pixelated; display: block; } .tile img { width: %dpx; height: %dpx; }
.facets img { height: %dpx; width: auto; } nav { margin-bottom: 1em; }
""" % (TILE_PX, TILE_PX, TILE_PX, UNIT_PX // 2)

# Reorders the tiles by the chosen metric (a unit without it goes last); the choice is kept in
# the URL (#sort=<metric index>:<asc|desc>), so a sorted page can be linked to and reloaded.
SORT_SCRIPT = """
const grid = document.getElementById("tiles"), select = document.getElementById("sort");
function sortTiles(choice) {
  const [k, dir] = choice.split(":"), val = t => parseFloat(t.dataset["k" + k]);
  [...grid.children].sort((a, b) => {
    const x = val(a), y = val(b);
    if (isNaN(x)) return 1; if (isNaN(y)) return -1;
    return dir === "desc" ? y - x : x - y;
  }).forEach(t => grid.appendChild(t));
}
select.addEventListener("change", () => { location.hash = "sort=" + select.value; sortTiles(select.value); });
const asked = location.hash.match(/^#sort=(-?\\d+:(asc|desc))$/);
if (asked) { select.value = asked[1]; sortTiles(asked[1]); }
"""


@dataclass
class Layer:
    """One layer's units as the site shows them, and what was planned for it."""

    name: str
    planned: int
    units: list[UnitEntry] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(float(u.record.get("seconds") or 0.0) for u in self.units)

    @property
    def metrics(self) -> list[str]:
        """The metric names any unit of the layer has, ``activation`` first."""
        names = {k for u in self.units for k in (u.record.get("metrics") or {})}
        return sorted(names, key=lambda k: (k != "activation", k))


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.4g}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _copy_images(entry: UnitEntry, img_dir: Path) -> dict[str, str]:
    """Copy the unit's images into ``img_dir``; ``{suffix: path relative to the layer page}``."""
    found = {}
    for suffix in IMAGES:
        source = entry.files.path(suffix)
        if source.is_file():
            img_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, img_dir / f"{entry.unit}.{suffix}")
            found[suffix] = f"img/{entry.unit}.{suffix}"
    return found


def _layer_page(layer: Layer, images: Mapping[int, Mapping[str, str]]) -> str:
    metrics = layer.metrics
    options = ['<option value="-1:asc">unit</option>'] + [
        f'<option value="{i}:{d}">{escape(m)} ({"high" if d == "desc" else "low"} first)</option>' for i, m in enumerate(metrics) for d in ("desc", "asc")
    ]
    tiles = []
    for u in layer.units:
        values = u.record.get("metrics") or {}
        data = " ".join(f'data-k{i}="{values[m]!r}"' for i, m in enumerate(metrics) if isinstance(values.get(m), (int, float)))
        caption = f"{u.unit}: {_number(values['activation'])}" if "activation" in values else str(u.unit)
        src = images[u.unit].get("png", "")
        tiles.append(f'<a class="tile" href="{u.unit}.html" data-k-1="{u.unit}" {data}><img src="{escape(src)}" alt="unit {u.unit}">{escape(caption)}</a>')
    body = [
        '<nav><a href="../../index.html">all layers</a></nav>',
        f'<p class="meta">{len(layer.units)} of {layer.planned} units rendered, {_duration(layer.seconds)} of optimization; '
        "caption: unit and its activation (the objective on the untransformed image).</p>",
        '<p><label>sort by <select id="sort">' + "".join(options) + "</select></label></p>",
        '<div class="tiles" id="tiles">' + "\n".join(tiles) + "</div>",
    ]
    return document(f"Layer {layer.name}", body, STYLE, SORT_SCRIPT)


def _examples(entry: UnitEntry, images: Mapping[str, str], side: str) -> str:
    found = (entry.record.get("examples") or {}).get(side) or []
    if f"{side}.png" not in images:
        return ""
    caption = ", ".join(f"{Path(str(e['path'])).name} ({_number(e['score'])})" for e in found)
    return f"<h2>Dataset examples: {'most' if side == 'top' else 'least'} activating</h2>" + figures([(caption, images[f"{side}.png"])])


def _unit_page(layer: Layer, index: int, images: Mapping[str, str]) -> str:
    entry = layer.units[index]
    nav = ['<a href="../../index.html">all layers</a>', f'<a href="index.html">layer {escape(layer.name)}</a>']
    if index > 0:
        nav.append(f'<a href="{layer.units[index - 1].unit}.html">previous unit</a>')
    if index + 1 < len(layer.units):
        nav.append(f'<a href="{layer.units[index + 1].unit}.html">next unit</a>')
    metrics = entry.record.get("metrics") or {}
    rows = "".join(f'<tr><td>{escape(k)}</td><td class="num">{_number(metrics[k])}</td></tr>' for k in layer.metrics if k in metrics)
    body = [
        "<nav>" + " · ".join(nav) + "</nav>",
        f'<img class="big" src="{escape(images.get("png", ""))}" width="{UNIT_PX}" height="{UNIT_PX}" alt="unit {entry.unit}">',
        f'<p class="meta">{escape(str(entry.record.get("kind", "channel")))} {entry.unit} of {escape(layer.name)}; '
        f'seed {entry.record.get("seed")}, {entry.record.get("steps")} steps, batch {entry.record.get("batch_index")} of the plan</p>',
    ]
    if "facets.png" in images:
        body += ["<h2>Facets (optimized together with a diversity term)</h2>", '<div class="facets">' + figures([("", images["facets.png"])]) + "</div>"]
    body += [_examples(entry, images, "top"), _examples(entry, images, "bottom")]
    body += ["<h2>Metrics</h2>", f"<table><tbody>{rows}</tbody></table>"]
    return document(f"{layer.name} unit {entry.unit}", body, STYLE)


def _index_page(meta: Mapping[str, Any], layers: Sequence[Layer], previews: Mapping[str, list[str]]) -> str:
    done = sum(len(layer.units) for layer in layers)
    planned = sum(layer.planned for layer in layers)
    seconds = sum(layer.seconds for layer in layers)
    rate = f", {done / seconds * 3600:.0f} units per hour of one shard" if seconds > 0 else ""
    body = [
        f'<p class="meta">{escape(str(meta.get("settings", "")))}</p>',
        f'<p class="meta">{done} of {planned} units in {len(layers)} layers, {meta.get("shards")} shards; '
        f"{_duration(seconds)} of optimization{rate}</p>",
    ]
    for layer in layers:
        strip = "".join(f'<img src="{escape(src)}" width="48" height="48" alt="">' for src in previews[layer.name])
        body += [
            f'<h2><a href="layers/{escape(layer.name)}/index.html">{escape(layer.name)}</a></h2>',
            f'<p class="meta">{len(layer.units)} of {layer.planned} units, {_duration(layer.seconds)}</p>',
            f'<a href="layers/{escape(layer.name)}/index.html">{strip}</a>',
        ]
    return document(f"Microscope: {meta.get('model', '?')}", body, STYLE)


def _meta(sweep_dir: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """What the shards were told (model, settings, shards) and each layer's planned unit count."""
    shards = [read_json(f / UNITS_DIR / SHARD_NAME) or {} for f in shard_folders(sweep_dir)]
    first = shards[0] if shards else {}
    planned: dict[str, int] = {}
    for shard in shards:
        planned.update({str(k): int(v) for k, v in (shard.get("planned") or {}).items()})
    return {"model": first.get("model"), "settings": first.get("settings"), "shards": first.get("shards")}, planned


def write_site(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the site of the microscope sweep ``sweep_dir`` (default into ``<sweep>/site``); returns index.html."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise DatasetError(f"{str(sweep)!r} is not a folder; pass the sweep folder of a `featviz microscope` run")
    if not shard_folders(sweep):
        raise DatasetError(f"no microscope shard under {str(sweep)!r} (no */{UNITS_DIR}/{SHARD_NAME}); pass the sweep folder of a `featviz microscope` run")
    site = Path(out_dir) if out_dir is not None else sweep / SITE_DIR
    meta, planned = _meta(sweep)
    layers = {name: Layer(name, count) for name, count in planned.items()}
    for entry in read_units(sweep):
        layers.setdefault(entry.layer, Layer(entry.layer, 0)).units.append(entry)
    previews: dict[str, list[str]] = {}
    for layer in layers.values():
        folder = site / "layers" / layer.name
        images = {u.unit: _copy_images(u, folder / "img") for u in layer.units}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text(_layer_page(layer, images), encoding="utf-8")
        for i, unit in enumerate(layer.units):
            (folder / f"{unit.unit}.html").write_text(_unit_page(layer, i, images[unit.unit]), encoding="utf-8")
        previews[layer.name] = [f"layers/{layer.name}/{images[u.unit]['png']}" for u in layer.units[:12] if "png" in images[u.unit]]
    index = site / "index.html"
    index.write_text(_index_page(meta, list(layers.values()), previews), encoding="utf-8")
    return index
