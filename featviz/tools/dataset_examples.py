"""Dataset examples: the photos of a folder, and the patches of them, that move a unit most.

Optimization isolates what *causes* a unit to fire; dataset examples show what it responds
to *in practice*, and, unlike one optimized image, a whole spectrum of it (article, "Why
visualize by optimization?" and "Diversity"): the images that excite it most, the ones that
inhibit it most, and those just either side of zero. This module scores every image of a
folder for one unit (a channel, or any direction in the layer's channel space) and saves

* ``top.png`` / ``bottom.png``: the k images with the highest / lowest score, each
  captioned with its score (the unit's activation);
* ``top_patches.png`` / ``bottom_patches.png``: for the k images whose single strongest
  (weakest) position is the most extreme, the crop of the image that position sees (its
  effective receptive field, :func:`receptive_field`);
* ``spectrum.png``: labelled rows minimum, slightly negative, slightly positive, maximum
  (``(none)`` where no image falls on that side of zero), each image captioned with its
  score, with the negative and positive optimized images as first and last rows when given;
* ``examples.json``: every number and path behind those pictures.

A folder is any tree of images: torchvision's ImageFolder layout (one sub-folder per class)
or a flat folder of JPEG/PNG files. Files that are not images are skipped with a warning.

``featviz dataset-examples FOLDER --layer blocks.10 --unit 3`` runs it from the shell
(:func:`main`); ``--wandb offline`` also logs the pictures, beside the optimized images
given with ``--positive`` / ``--negative``, to a W&B run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader, Dataset

from featviz.errors import ConfigError, DatasetError
from featviz.images import atomic_write_bytes, find_images, load_image, save_json, to_uint8
from featviz.models import FeatureModel
from featviz.models.layout import grid_of
from featviz.objectives.directions import Direction, DirectionBase, RandomDirection

log = logging.getLogger("featviz")

REDUCTIONS = ("mean", "max")
SPECTRUM_ROWS = ("minimum", "slightly_negative", "slightly_positive", "maximum")
PATCH_MIN_SIDE = 64  # small receptive fields are upsampled to this for display


class _Images(Dataset):
    """Images by index; an unreadable file yields ``ok=False`` instead of stopping the scan."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths, self.size = list(paths), int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        try:
            return load_image(self.paths[index], self.size), index, True
        except DatasetError:
            return torch.zeros(3, self.size, self.size), index, False


@dataclass
class ExampleScores:
    """One unit's response to every readable image of a folder.

    ``scores`` reduce the unit's map over positions (``reduce``); ``peak`` / ``trough`` are
    its single largest / smallest position and where it is (``[y, x]`` on the map).
    """

    paths: list[Path]
    scores: torch.Tensor
    peak: torch.Tensor
    peak_at: torch.Tensor
    trough: torch.Tensor
    trough_at: torch.Tensor
    map_size: tuple[int, int]
    image_size: int
    reduce: str
    unreadable: list[Path] = field(default_factory=list)


def unit_direction(layer: str, unit: int | None = None, direction_seed: int | None = None) -> DirectionBase:
    """The unit to search for, as a direction: channel ``unit`` (one-hot) or a random direction."""
    if (unit is None) == (direction_seed is None):
        raise ConfigError("give exactly one of --unit N (a channel) or --direction-seed S (a random direction)")
    return Direction(layer, {int(unit): 1.0}) if unit is not None else RandomDirection(layer, int(direction_seed))  # type: ignore[arg-type]


@torch.no_grad()
def score_folder(
    model: FeatureModel,
    folder: str | Path,
    direction: DirectionBase,
    size: int | None = None,
    batch_size: int = 32,
    reduce: str = "mean",
    workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> ExampleScores:
    """Run every image of ``folder`` through ``model`` and score it for ``direction``.

    Args:
        direction: a :class:`~featviz.objectives.directions.DirectionBase`; its projection of
            ``direction.layer`` is the unit's map, so a channel is ``Direction(layer, {c: 1})``.
        size: the side images are cropped to (default: the model's input size).
        reduce: ``mean`` over positions (what the ``channel`` objective maximizes) or ``max``.
        progress: tqdm bar over batches; None shows it only on a terminal.
    """
    from tqdm.auto import tqdm

    if reduce not in REDUCTIONS:
        raise ConfigError(f"reduce={reduce!r}; use one of {list(REDUCTIONS)}")
    if int(batch_size) < 1:
        raise ConfigError(f"batch size {batch_size} must be >= 1")
    side = int(size or model.input_size)
    shape = model.layer_shapes(side, [direction.layer])[direction.layer]
    direction.validate({direction.layer: shape}, 1)
    paths = find_images(folder)
    dev = torch.device(device)
    model = model.to(dev)
    loader = DataLoader(_Images(paths, side), batch_size=int(batch_size), num_workers=int(workers), shuffle=False)
    n = len(paths)
    scores = torch.full((n,), float("nan"))
    peak, trough = torch.empty(n), torch.empty(n)
    peak_at, trough_at = torch.zeros(n, 2, dtype=torch.long), torch.zeros(n, 2, dtype=torch.long)
    readable = torch.zeros(n, dtype=torch.bool)
    map_size = (1, 1)
    for images, index, ok in tqdm(loader, desc="dataset examples", unit="batch", disable=None if progress is None else not progress):
        if not ok.any():
            continue
        images, index = images[ok], index[ok]
        maps = direction.projection(grid_of(model(images.to(dev), [direction.layer]), direction.layer)).float().cpu()
        map_size = (maps.shape[1], maps.shape[2])
        flat = maps.flatten(1)
        scores[index] = flat.mean(1) if reduce == "mean" else flat.amax(1)
        hi, hi_at = flat.max(1)
        lo, lo_at = flat.min(1)
        peak[index], trough[index] = hi, lo
        peak_at[index] = torch.stack([hi_at // map_size[1], hi_at % map_size[1]], 1)
        trough_at[index] = torch.stack([lo_at // map_size[1], lo_at % map_size[1]], 1)
        readable[index] = True
    unreadable = [p for p, r in zip(paths, readable.tolist()) if not r]
    if unreadable:
        shown = ", ".join(p.name for p in unreadable[:3])
        log.warning("skipping %d unreadable image file(s) (%s%s)", len(unreadable), shown, ", ..." if len(unreadable) > 3 else "")
    if not readable.any():
        raise DatasetError(f"none of the {n} image file(s) under {str(folder)!r} could be read; check they are valid JPEG/PNG files")
    keep = readable.nonzero().flatten()
    return ExampleScores(
        paths=[paths[i] for i in keep.tolist()],
        scores=scores[keep],
        peak=peak[keep],
        peak_at=peak_at[keep],
        trough=trough[keep],
        trough_at=trough_at[keep],
        map_size=map_size,
        image_size=side,
        reduce=reduce,
        unreadable=unreadable,
    )


def top_bottom(values: torch.Tensor, k: int) -> tuple[list[int], list[int]]:
    """Indices of the ``k`` largest (descending) and ``k`` smallest (ascending) values; ties keep folder order."""
    k = min(int(k), values.numel())
    return (
        torch.argsort(values, descending=True, stable=True)[:k].tolist(),
        torch.argsort(values, stable=True)[:k].tolist(),
    )


def spectrum(values: torch.Tensor, k: int) -> dict[str, list[int]]:
    """The article's spectrum: ``k`` indices each for minimum, slightly negative, slightly positive, maximum.

    "Slightly" means closest to zero on that side; a side with no values gives an empty row
    (a unit after a ReLU is never negative).
    """
    top, bottom = top_bottom(values, k)
    order = torch.argsort(values, stable=True).tolist()
    negative = [i for i in order if values[i] < 0]
    positive = [i for i in order if values[i] > 0]
    return {
        "minimum": bottom,
        "slightly_negative": negative[::-1][: int(k)],
        "slightly_positive": positive[: int(k)],
        "maximum": top,
    }


def receptive_field(model: FeatureModel, layer: str, size: int, mass: float = 0.95) -> int:
    """Side of the square of input pixels that one position of ``layer`` effectively sees.

    The gradient of the centre position (all channels, randomly weighted) with respect to a grey, lightly
    noised input says how much each pixel matters; the side is that of the smallest square
    around the position holding ``mass`` of the gradient's magnitude (1.0 = every pixel
    that matters at all, the theoretical receptive field).
    """
    if not 0 < mass <= 1:
        raise ConfigError(f"receptive-field mass {mass} must be in (0, 1]")
    dev = model.mean.device
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, size, size, generator=gen).to(dev)
    x = (0.5 + 0.05 * noise).requires_grad_(True)
    with torch.enable_grad():
        act = model(x, [layer])[layer]
        if act.dim() == 2:
            return size
        h, w = act.shape[-2:]
        # Random channel weights: a plain sum could cancel (e.g. a channel and its negative).
        mix = torch.randn(act.shape[1], generator=gen).to(act)
        (act[0, :, h // 2, w // 2] @ mix).backward()
    assert x.grad is not None
    weight = x.grad[0].abs().sum(0)
    total = float(weight.sum())
    if total == 0:
        return size
    cy, cx = _centre_pixel(h // 2, h, size), _centre_pixel(w // 2, w, size)
    for r in range(size):
        box = weight[max(0, cy - r) : cy + r + 1, max(0, cx - r) : cx + r + 1]
        if float(box.sum()) >= mass * total * (1 - 1e-6):
            return min(size, 2 * r + 1)
    return size


def _centre_pixel(pos: int, extent: int, size: int) -> int:
    """The input pixel at the centre of map position ``pos`` of ``extent``."""
    return min(size - 1, int((pos + 0.5) * size / extent))


def patch(image: torch.Tensor, at: Sequence[int], map_size: tuple[int, int], side: int) -> tuple[torch.Tensor, list[int]]:
    """The ``side``-pixel square of ``image`` centred on map position ``at = (y, x)``.

    Moved inside the image at borders, so every patch has the same size; returns the crop
    and its box ``[top, left, side]``.
    """
    size = image.shape[-1]
    side = min(int(side), size)
    y, x = (_centre_pixel(int(at[i]), map_size[i], size) for i in (0, 1))
    top = min(max(0, y - side // 2), size - side)
    left = min(max(0, x - side // 2), size - side)
    return image[:, top : top + side, left : left + side], [top, left, side]


def _display(patches: list[torch.Tensor]) -> torch.Tensor:
    batch = torch.stack(patches)
    side = batch.shape[-1]
    if side < PATCH_MIN_SIDE:
        batch = F.interpolate(batch, size=(PATCH_MIN_SIDE, PATCH_MIN_SIDE), mode="nearest")
    return batch


EMPTY = "(none)"  # what an empty row of the spectrum says (a unit after a ReLU has no negative images)


def _sheet(rows: Sequence[Sequence[torch.Tensor]], captions: Sequence[Sequence[str]], size: int, names: Sequence[str] = ()) -> Image.Image:
    """Rows of images (each resized to ``size``), each with its caption (its score) under it.

    ``names`` label the rows on the left; a row without images says ``(none)``.
    """
    font = ImageFont.load_default(size=max(10, size // 10))
    pad, cap_h = 2, max(10, size // 10) + 4
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [n.replace("_", " ") for n in names]
    name_w = max((int(measure.textlength(t, font=font)) for t in labels), default=-8) + 8
    cell_w = max([size, *(int(measure.textlength(c, font=font)) + 4 for row in captions for c in row)]) + pad
    cols = max([1, *(len(r) for r in rows)])
    canvas = Image.new("RGB", (name_w + pad + cols * cell_w, pad + len(rows) * (size + cap_h + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, row in enumerate(rows):
        y = pad + i * (size + cap_h + pad)
        if labels:
            draw.text((4, y + size // 2), labels[i], fill="black", font=font, anchor="lm")
        if not row:
            draw.text((name_w + pad + 4, y + size // 2), EMPTY, fill=(110, 110, 110), font=font, anchor="lm")
        for j, (img, caption) in enumerate(zip(row, captions[i])):
            if img.shape[-2:] != (size, size):
                img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False)[0]
            x = name_w + pad + j * cell_w
            canvas.paste(Image.fromarray(to_uint8(img)), (x, y))
            draw.text((x + size // 2, y + size + 2), caption, fill="black", font=font, anchor="mt")
    return canvas


def _save_sheet(sheet: Image.Image, path: Path) -> None:
    atomic_write_bytes(path, lambda f: sheet.save(f, format="PNG"))


def save_examples(
    result: ExampleScores,
    out_dir: str | Path,
    k: int = 8,
    rf_side: int | None = None,
    positive: torch.Tensor | None = None,
    negative: torch.Tensor | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the pictures and ``examples.json`` into ``out_dir``; return the JSON content.

    ``rf_side`` is the patch side (default: the whole image); ``positive`` / ``negative``
    are optimized images ``[3, H, W]`` for the first / last spectrum row.
    """
    if int(k) < 1:
        raise ConfigError(f"k={k} must be >= 1")
    out = Path(out_dir)
    size = result.image_size
    side = int(rf_side or size)
    cache: dict[int, torch.Tensor] = {}

    def image(i: int) -> torch.Tensor:
        if i not in cache:
            cache[i] = load_image(result.paths[i], size)
        return cache[i]

    def entry(i: int) -> dict[str, Any]:
        return {"path": str(result.paths[i]), "score": float(result.scores[i])}

    def score(i: int) -> str:
        return f"{float(result.scores[i]):.3g}"

    top, bottom = top_bottom(result.scores, k)
    for name, chosen in (("top", top), ("bottom", bottom)):
        _save_sheet(_sheet([[image(i) for i in chosen]], [[score(i) for i in chosen]], size), out / f"{name}.png")
    patch_info: dict[str, list[dict[str, Any]]] = {}
    for name, values, where, pick in (
        ("top_patches", result.peak, result.peak_at, 0),
        ("bottom_patches", result.trough, result.trough_at, 1),
    ):
        chosen = top_bottom(values, k)[pick]
        crops, rows = [], []
        for i in chosen:
            crop, box = patch(image(i), where[i].tolist(), result.map_size, side)
            crops.append(crop)
            rows.append({"path": str(result.paths[i]), "value": float(values[i]), "y": int(where[i, 0]), "x": int(where[i, 1]), "box": box})
        shown = _display(crops)
        _save_sheet(_sheet([list(shown)], [[f"{r['value']:.3g}" for r in rows]], shown.shape[-1]), out / f"{name}.png")
        patch_info[name] = rows
    groups = spectrum(result.scores, k)
    rows_img: list[list[torch.Tensor]] = [[image(i) for i in groups[g]] for g in SPECTRUM_ROWS]
    row_caps: list[list[str]] = [[score(i) for i in groups[g]] for g in SPECTRUM_ROWS]
    row_names = list(SPECTRUM_ROWS)
    if negative is not None:
        rows_img.insert(0, [negative])
        row_caps.insert(0, ["optimized"])
        row_names.insert(0, "negative_optimized")
    if positive is not None:
        rows_img.append([positive])
        row_caps.append(["optimized"])
        row_names.append("positive_optimized")
    _save_sheet(_sheet(rows_img, row_caps, size, row_names), out / "spectrum.png")
    s = result.scores
    summary: dict[str, Any] = {
        **(info or {}),
        "reduce": result.reduce,
        "image_size": size,
        "map_size": list(result.map_size),
        "patch_side": side,
        "images_scored": len(result.paths),
        "unreadable": [str(p) for p in result.unreadable],
        "score_stats": {"min": float(s.min()), "max": float(s.max()), "mean": float(s.mean()), "negative": int((s < 0).sum())},
        "top": [entry(i) for i in top],
        "bottom": [entry(i) for i in bottom],
        **patch_info,
        "spectrum_rows": row_names,
        "spectrum": {g: [entry(i) for i in groups[g]] for g in SPECTRUM_ROWS},
    }
    save_json(summary, out / "examples.json")
    return summary


