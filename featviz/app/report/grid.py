"""The snapshot grid: one row per run, one column per snapshot step, each image at tile size.

A batch run saves ``snapshots/step_<k>.png`` as all its images tiled together, and each
image alone as ``snapshots/step_<k>/<i>.png``; the grid shows those one tile each, so a
column of a batch-of-B sweep is B tiles wide instead of B images squeezed into one tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from featviz.rundir import JobRecord

GAP = (220, 220, 220)  # a snapshot a run does not have


def snapshot_images(run: JobRecord, step: int) -> list[Path]:
    """The images of one snapshot: each batch element's file when there are several, else the one file."""
    path = run.snapshots.get(step)
    if path is None:
        return []
    singles = sorted(path.with_suffix("").glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    return singles or [path]


def _tile(path: Path, tile: int) -> Image.Image:
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = tile / max(im.size)
        return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)


def make_grid(runs: Sequence[JobRecord], labels: Sequence[list[str]], steps: Sequence[int], tile: int) -> Image.Image:
    """Rows = runs (text label on the left), columns = snapshot ``steps`` (as wide as the largest batch); gaps are grey."""
    font = ImageFont.load_default(size=max(10, tile // 8))
    pad, line_h = 4, max(10, tile // 8) + 3
    draw0 = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((int(draw0.textlength(t, font=font)) for lines in labels for t in lines), default=0) + 2 * pad
    head_h = line_h + 2 * pad
    row_h = max(tile, line_h * max((len(x) for x in labels), default=1)) + pad
    images = [[snapshot_images(run, step) for step in steps] for run in runs]
    per_column = [max([len(row[j]) for row in images] + [1]) for j in range(len(steps))]
    col_x = [label_w]
    for n in per_column:
        col_x.append(col_x[-1] + n * (tile + pad) + pad)
    canvas = Image.new("RGB", (col_x[-1], head_h + len(runs) * row_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, step in enumerate(steps):
        text = f"step {step}"
        draw.text((col_x[j] + (col_x[j + 1] - col_x[j] - pad - draw.textlength(text, font=font)) / 2, pad), text, fill="black", font=font)
    for i, lines in enumerate(labels):
        y = head_h + i * row_h
        for k, text in enumerate(lines):
            draw.text((pad, y + k * line_h), text, fill="black", font=font)
        for j, paths in enumerate(images[i]):
            if not paths:
                draw.rectangle([col_x[j], y, col_x[j] + tile - 1, y + tile - 1], fill=GAP)
            for b, path in enumerate(paths):
                canvas.paste(_tile(path, tile), (col_x[j] + b * (tile + pad), y))
    return canvas
