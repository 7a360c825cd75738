"""featviz units: every channel of a layer rendered in batches, one labelled contact sheet."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from featviz.app.build import RunParts, build_run, model_from_config
from featviz.app.config import CONF_SOURCE, to_plain
from featviz.app.reporting import report
from featviz.errors import FeatvizError, check_seed
from featviz.models.feature_model import FeatureModel
from featviz.progress import ProgressBar
from featviz.render import resolve_device
from featviz.tools.contact_sheet import all_units, render_units, write_outputs


def run_units(cfg: Mapping[str, Any], out_dir: Path, model: FeatureModel | None = None) -> Path:
    """Render the units ``cfg["units"]`` names, configured by the rest of ``cfg`` (``conf/units.yaml``).

    Every chunk is built by :func:`featviz.app.build.build_run` with ``batch`` set to the
    chunk's size and ``seed + chunk index`` as its seed, so params, transforms,
    regularizers, optimizer and perf options are those of an ordinary run, and a rerun
    gives the same bytes. ``model`` reuses a loaded network (it gets optimized in place).
    """
    ucfg = dict(cfg.get("units") or {})
    layer = str(ucfg.get("layer", "blocks.8"))
    if model is None:
        model = model_from_config(cfg["model"], resolve_device(cfg.get("device", "auto")))
    model.check_layers([layer])
    resize = bool((cfg.get("transforms") or {}).get("resize", True))
    size = model.input_size if resize else int(cfg["param"].get("size", 128))
    units = [int(u) for u in ucfg["list"]] if ucfg.get("list") is not None else all_units(model, layer, size)
    seed = int(cfg.get("seed", 0))

    def make_parts(k: int, chunk: list[int]) -> RunParts:
        # The objective here only tells build_run which layer to keep exact; render uses UnitsObjective.
        chunk_cfg = {**cfg, "batch": len(chunk), "seed": seed + k, "objective": {"kind": "channel", "layer": layer, "unit": chunk[0]}}
        return build_run(chunk_cfg, model=model)

    batch = int(ucfg.get("batch", 8))
    chunks = -(-len(units) // max(1, batch))

    def progress(k: int, chunk: list[int]) -> list[ProgressBar]:
        # Which units and how far through the layer, on the bar or in each plain line of a log.
        return [ProgressBar(desc=f"units {chunk[0]}-{chunk[-1]} (batch {k + 1}/{chunks})")] if cfg.get("progress", True) else []

    result = render_units(
        model,
        layer,
        units,
        make_parts,
        batch=batch,
        steps=int(cfg["steps"]),
        kind=str(ucfg.get("kind", "channel")),
        callbacks=progress,
    )
    sheet = cfg.get("sheet") or {}
    return write_outputs(result, out_dir, int(sheet.get("columns", 8)), bool(sheet.get("labels", True)), {"config": dict(cfg)})


@hydra.main(version_base="1.3", config_path=CONF_SOURCE, config_name="units")
def main(cfg: DictConfig) -> None:
    """``featviz units [overrides]``: Hydra, with ``conf/units.yaml`` as the primary config."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        check_seed(cfg.get("seed", 0))
        path = run_units(to_plain(cfg), out_dir)
    except FeatvizError as exc:
        sys.exit(report("featviz units", exc))
    print(f"featviz: contact sheet in {path}")
