"""Render many units of one layer, a batch at a time, into one labelled contact sheet.

Surveying a layer (every channel of ``blocks.8``, say) one render per unit pays the fixed
cost of a step (Python, small kernels, the optimizer) once per unit; rendering ``batch``
units as the elements of one batch pays it once per batch and gives the convolutions
bigger matrices. Unit ``u_i`` is optimized by batch element ``i`` only, which is what
``sum(channel(layer, u_i).batch(i))`` asks for; :class:`UnitsObjective` computes the
same score with one gather instead of ``batch`` masked copies of the whole activation.

Library use: :func:`render_units` then :func:`contact_sheet`. From the command line, with
every group of ``conf/config.yaml`` available::

    python -m featviz units units.layer=blocks.8 units.batch=16 steps=256
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from featviz.callbacks import Callback
from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.images import atomic_write_bytes, save_json, save_png, to_uint8
from featviz.models.feature_model import FeatureModel
from featviz.models.layout import grid_of
from featviz.objectives.base import Acts, Objective, Shapes
from featviz.render import RunParts, render

KINDS = ("channel", "neuron")


class UnitsObjective(Objective):
    """Batch element ``i`` maximizes unit ``units[i]`` of ``layer``: a channel's mean, or its centre neuron."""

    def __init__(self, layer: str, units: Sequence[int], kind: str = "channel") -> None:
        if kind not in KINDS:
            raise ConfigError(f"units.kind={kind!r}; use one of {', '.join(KINDS)}")
        if not units:
            raise ConfigError("units.list is empty; give unit indices or null for every channel")
        self.layer, self.units, self.kind = layer, [int(u) for u in units], kind
        self.layers = frozenset([layer])
        self.name = f"units({layer}:{self.units[0]}..{self.units[-1]})"
        self._index: torch.Tensor | None = None

    def validate(self, shapes: Shapes, batch: int) -> None:
        if batch != len(self.units):
            raise ConfigError(f"{len(self.units)} units need batch={len(self.units)}, not {batch}")
        if self.layer in shapes:
            channels = shapes[self.layer][0]
            bad = [u for u in self.units if not 0 <= u < channels]
            if bad:
                raise UnitOutOfRangeError(f"unit(s) {bad} out of range for layer {self.layer!r} with {channels} channels; use 0..{channels - 1}")

    def score(self, acts: Acts) -> torch.Tensor:
        a = grid_of(acts, self.layer)  # [B, C, H, W] whatever the layer's layout
        if self._index is None or self._index.device != a.device:
            self._index = torch.tensor(self.units, device=a.device)
        picked = a[torch.arange(a.shape[0], device=a.device), self._index]  # [B, H, W]
        if self.kind == "neuron":
            return picked[:, picked.shape[1] // 2, picked.shape[2] // 2]
        return picked.reshape(picked.shape[0], -1).mean(dim=1)


@dataclass
class UnitsResult:
    """Images ``[N, 3, H, W]`` in [0, 1] in the order of ``units``, each unit's final score, timings."""

    layer: str
    units: list[int]
    images: torch.Tensor
    scores: list[float]
    wall_time: float
    steps: int

    @property
    def unit_steps_per_s(self) -> float:
        """Units x steps per second: the throughput figure to compare batch sizes by."""
        return len(self.units) * self.steps / self.wall_time if self.wall_time > 0 else float("nan")


def all_units(model: FeatureModel, layer: str, size: int) -> list[int]:
    """Every channel of ``layer`` (its output shape probed at ``size``)."""
    return list(range(model.layer_shapes(size, [layer])[layer][0]))


@torch.no_grad()
def final_scores(model: FeatureModel, objective: Objective, images: torch.Tensor, device: torch.device) -> list[float]:
    """Each image's score with no transform but the resize to the model's input size."""
    x = images.to(device)
    if x.shape[-1] != model.input_size:
        x = torch.nn.functional.interpolate(x, size=(model.input_size, model.input_size), mode="bilinear", align_corners=False)
    return [float(v) for v in objective(model(x, objective.layers))]


def render_units(
    model: FeatureModel,
    layer: str,
    units: Sequence[int],
    make_parts: Callable[[int, list[int]], RunParts],
    batch: int = 8,
    steps: int = 256,
    kind: str = "channel",
    callbacks: Callable[[int, list[int]], Sequence[Callback]] = lambda _chunk, _units: (),
) -> UnitsResult:
    """Render ``units`` of ``layer`` ``batch`` at a time and return the images in unit order.

    Args:
        make_parts: ``(chunk index, its units) -> RunParts`` with a parameterization of
            ``len(units)`` images and that chunk's generator (its objective is replaced by
            :class:`UnitsObjective`); :func:`run_units` builds them from a config.
        batch: units per render; the last chunk may be smaller.
        callbacks: ``(chunk index, its units) -> extra callbacks`` for that chunk's render.
    """
    if int(batch) < 1:
        raise ConfigError(f"units.batch={batch} must be >= 1")
    units = [int(u) for u in units]
    chunks = [units[i : i + int(batch)] for i in range(0, len(units), int(batch))]
    images, scores = [], []
    t0 = time.perf_counter()
    for k, chunk in enumerate(chunks):
        parts = make_parts(k, chunk)
        objective = UnitsObjective(layer, chunk, kind)
        result = render(
            model, objective, param=parts.param, transforms=parts.transforms, regularizers=parts.regularizers,
            optimizer=parts.optimizer, steps=steps, log_every=steps, callbacks=[*parts.callbacks, *callbacks(k, chunk)],
            device=parts.device, generator=parts.generator,
        )
        images.append(result.images)
        scores.extend(final_scores(model, objective, result.images, parts.device))
    return UnitsResult(layer, units, torch.cat(images), scores, time.perf_counter() - t0, int(steps))


def contact_sheet(images: torch.Tensor, labels: Sequence[str] | None = None, columns: int = 8, pad: int = 4) -> Image.Image:
    """Tile ``[N, 3, H, W]`` images on white, each with its label underneath."""
    n, _, h, w = images.shape
    columns = max(1, min(int(columns), n))
    rows = math.ceil(n / columns)
    font = ImageFont.load_default()
    label_h, cell_w = 0, w
    if labels is not None:
        if len(labels) != n:
            raise ConfigError(f"{len(labels)} labels for {n} images")
        label_h = max(font.getbbox(t)[3] for t in labels) + pad
        cell_w = max(w, *(font.getbbox(t)[2] for t in labels))
    sheet = Image.new("RGB", (columns * (cell_w + pad) + pad, rows * (h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        r, c = divmod(i, columns)
        x, y = pad + c * (cell_w + pad), pad + r * (h + label_h + pad)
        sheet.paste(Image.fromarray(to_uint8(images[i])), (x, y))
        if labels is not None:
            draw.text((x, y + h + pad // 2), labels[i], fill="black", font=font)
    return sheet


def write_outputs(result: UnitsResult, out_dir: Path, columns: int, labels: bool, extra: Mapping[str, Any]) -> Path:
    """``contact_sheet.png``, ``units/<unit>.png`` and ``units.json`` under ``out_dir``; returns the sheet's path."""
    for unit, image in zip(result.units, result.images):
        save_png(image, out_dir / "units" / f"{unit}.png")
    names = [f"{u}: {s:.3g}" for u, s in zip(result.units, result.scores)] if labels else None
    sheet = contact_sheet(result.images, names, columns)
    path = atomic_write_bytes(out_dir / "contact_sheet.png", lambda f: sheet.save(f, format="PNG"))
    save_json(
        {
            "layer": result.layer,
            "units": result.units,
            "scores": dict(zip(map(str, result.units), result.scores)),
            "wall_time_s": result.wall_time,
            "unit_steps_per_s": result.unit_steps_per_s,
            **extra,
        },
        out_dir / "units.json",
    )
    return path

