"""Reproduce every figure of the article on the embedded network: docs/gallery.md and its images.

    .venv/bin/python benchmarks/gallery.py                 # the article's step counts, 128 px
    .venv/bin/python benchmarks/gallery.py --size 64       # the same at 64 px (4x cheaper per step)
    .venv/bin/python benchmarks/gallery.py --only naive,frequency --steps 16 --out /tmp/g   # a quick look

Each figure is one ``python -m featviz -m +experiment=NAME`` sweep (W&B and the end-of-run
metrics off: they cost time and no figure needs them) and one ``featviz report`` of it, whose
snapshot grid (rows = runs, columns = snapshot steps) becomes ``docs/gallery/NAME.jpg``,
shrunk to at most ``--width`` px so the repository stays small. The figures whose columns are
step counts (the first figure, learning rate, frequency penalization, robustness, the
decorrelated space) run the article's 2048 steps; the others run their experiment's own
length. The wall time of each sweep on this machine and the 1-minute load average before and
after it go into the page beside its command, because on a shared machine the times only
mean something with the load next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
ARTICLE_STEPS = 2048
JPEG_QUALITY = 72  # with --width 720: 15-80 KB a figure
OFF = ["logger=none", "metrics.enabled=false", "progress=false", "checkpoint_every=0"]


@dataclass(frozen=True)
class Figure:
    """One figure of the article: the experiment that makes it and how the grid is cut."""

    name: str
    title: str
    article_steps: bool  # the article's columns are step counts: run 2048 steps
    report: tuple[str, ...] = ()  # extra `featviz report` flags (which snapshot columns, tile size)


FIGURES: tuple[Figure, ...] = (
    Figure("naive", "Optimizing the image from noise: steps 0, 4, 48, 2048", True, ("--steps", "0,4,48,2048")),
    Figure("lr_noise", "Even with a tuned learning rate, noise: lr 0.01 / 0.05 / 0.2 at steps 1, 32, 128, 256, 2048", True,
           ("--steps", "1,32,128,256,2048")),
    Figure("frequency", "Frequency penalization: none, L1, total variation, blur, bilateral (weight 1 each)", True,
           ("--steps", "1,32,128,256,2048")),
    Figure("robustness", "Transformation robustness: none, jitter 1 px, rotate 5 degrees, scale 1.1", True, ("--steps", "1,32,128,256,2048")),
    Figure("decorrelated", "Preconditioning: pixel / decorrelated FFT space, without and with transformations", True,
           ("--steps", "1,32,128,256,2048")),
    Figure("objectives", "Objectives: neuron, channel, layer (DeepDream), class logit, class probability", False),
    Figure("logits_vs_probs", "Class logits versus class probabilities (tabby cat)", False),
    Figure("negative_positive", "Positive and negative optimization of one channel", False),
    Figure("neuron_arithmetic", "Neuron interaction: A, B, A + B, A + 0.5 B", False),
    Figure("random_directions", "Random directions in activation space at four depths, two seeds", False),
    Figure("diversity_facets", "Diversity: a batch of 4 with diversity weight 0, 10, 30", False),
    Figure("interpolation", "Interpolating between two channels: independent / shared parameterization, with and without alignment", False),
)


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"gallery: {shlex.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def make(figure: Figure, out: Path, work: Path, size: int | None, steps: int | None, width: int) -> dict[str, object]:
    """Run one figure's sweep and report; returns what the page says about it."""
    sweep = work / figure.name
    overrides = [f"+experiment={figure.name}", *OFF, f"hydra.sweep.dir={sweep}"]
    if steps is not None:
        overrides.append(f"steps={steps}")
    elif figure.article_steps:
        overrides.append(f"steps={ARTICLE_STEPS}")
    if size is not None:
        overrides.append(f"param.size={size}")
    shown = ["python", "-m", "featviz", "-m", *[o for o in overrides if not o.startswith("hydra.sweep.dir")]]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    run([sys.executable, "-m", "featviz", "-m", *overrides])
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    flags = list(figure.report)
    if steps is not None and "--steps" in flags:  # a quick run has none of the article's columns past its length
        i = flags.index("--steps")
        del flags[i : i + 2]
    if "--steps" not in flags:  # a figure of final images: the last snapshot only
        first = next(p for p in sorted(sweep.iterdir()) if (p / "result.json").is_file())
        flags += ["--steps", str(json.loads((first / "result.json").read_text())["config"]["steps"])]
    run([sys.executable, "-m", "featviz", "report", str(sweep), "--tile", "128", *flags])
    grid = Image.open(sweep / "report" / "grid.png").convert("RGB")
    if grid.width > width:
        grid = grid.resize((width, round(grid.height * width / grid.width)), Image.LANCZOS)
    image = out / "gallery" / f"{figure.name}.jpg"
    image.parent.mkdir(parents=True, exist_ok=True)
    grid.save(image, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    runs = len([p for p in sweep.iterdir() if (p / "result.json").is_file()])
    return {"name": figure.name, "title": figure.title, "command": shlex.join(shown), "runs": runs, "seconds": round(seconds, 1),
            "load": [round(load_before, 1), round(load_after, 1)], "image": f"gallery/{figure.name}.jpg", "kb": round(image.stat().st_size / 1024)}


def page(rows: list[dict[str, object]], note: str) -> str:
    lines = [
        "# Gallery: the article's figures on EfficientNet-Lite0",
        "",
        "Every figure of *Feature Visualization* (Olah, Mordvintsev & Schubert, Distill 2017) that",
        "has an experiment config, made by the project's own commands on the embedded",
        "EfficientNet-Lite0 (the article's InceptionV1 layer mixed4a maps to `blocks.6`;",
        "[spectrum.md](spectrum.md) has the mapping). Rows are the runs of the sweep, columns the",
        "snapshot steps. Regenerate all of it with `.venv/bin/python benchmarks/gallery.py`.",
        "",
        note,
        "",
    ]
    for r in rows:
        lines += [
            f"## {r['title']}",
            "",
            f"![{r['name']}]({r['image']})",
            "",
            "```bash",
            f"{r['command']}",
            "```",
            "",
            f"{r['runs']} run{'s' * (r['runs'] != 1)} in {r['seconds']} s on this CPU (load average {r['load'][0]} before, {r['load'][1]} after).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs", help="where gallery.md and gallery/ go (default docs/)")
    ap.add_argument("--size", type=int, default=None, help="param.size for every figure (default: the experiments' 128 px)")
    ap.add_argument("--steps", type=int, default=None, help="steps for every figure (default: 2048 where the article's columns are steps)")
    ap.add_argument("--only", default="", help="comma-separated figure names")
    ap.add_argument("--width", type=int, default=720, help="largest image width in px")
    args = ap.parse_args()
    chosen = [f for f in FIGURES if not args.only or f.name in args.only.split(",")]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="featviz-gallery-") as tmp:
        for figure in chosen:
            rows.append(make(figure, args.out, Path(tmp), args.size, args.steps, args.width))
            print(json.dumps(rows[-1]), flush=True)
    size = f"{args.size} px images" if args.size else "128 px images (the experiments' size)"
    length = f"{args.steps} steps" if args.steps else f"{ARTICLE_STEPS} steps where the article's columns are steps, the experiment's own length otherwise"
    note = (f"Made with {size} and {length}, one sweep after another on this machine's "
            f"{os.cpu_count()} CPU cores, with W&B and the end-of-run metrics off.")
    (args.out / "gallery.md").write_text(page(rows, note) + "\n")


if __name__ == "__main__":
    main()
