"""The vivid sweep's table and picture: preset=best, the default pipeline, param=maco_vivid's rungs and torch-lucent.

Not a test: a measurement, to run by hand (docs/vivid.md). The featviz sides are one
multirun of ``+experiment=vivid`` (each rung a file of conf/experiment/vivid_stack/); their
numbers are the ``result.json`` finals every run records. torch-lucent's ``render_vis`` runs
with its defaults (128 px decorrelated FFT image, its standard transforms, Adam 0.05, 512
steps) on the same embedded EfficientNet-Lite0 in its own venv and saves PNGs, which this
script then scores exactly as featviz's metrics callback scores a run (EfficientNet-Lite1:
``transfer/top1``, ``transfer/moderate_top1`` over the same 16 moderate views; colourfulness,
RMS contrast, hf_share)::

    python -m featviz -m launcher=fused +experiment=vivid hydra.sweep.dir=outputs/vivid/sweep
    LUCENT_VENV=../venvs/lucent python benchmarks/vivid.py --lucent outputs/vivid --classes 1,130,281,417,511,947,954,980
    python benchmarks/vivid.py --table outputs/vivid/sweep --lucent-dir outputs/vivid
    python benchmarks/vivid.py --picture experiments/vivid/vivid_classes.png --table outputs/vivid/sweep --lucent-dir outputs/vivid --sides best,vivid
    python benchmarks/vivid.py --photo-stats outputs/reference    # the photo ranges of param=maco_vivid's prior
    python benchmarks/vivid.py --param-time                       # MacoImage vs VividMacoImage, one forward + backward

The table has one row per class (mean over seeds) and one per side: mean transfer top-1,
mean top-1 over the moderate views, median colourfulness with its range over the classes,
median RMS contrast and hf_share, median seconds per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from best_pipeline import LUCENT_STEPS, REPO, lucent_render  # noqa: E402 - the benchmarks folder is not a package
COLUMNS = ("top1", "moderate_top1", "colourfulness", "rms_contrast", "hf_share")


def lucent_worker(classes: list[int], seeds: list[int], steps: int, out: Path) -> int:
    """Runs in the lucent venv: render_vis with its defaults per class and seed, saved as PNG with its time."""
    sys.path.insert(0, str(REPO))
    from featviz.images import save_png
    from featviz.models import build_model

    net = build_model("efficientnet_lite0").net  # the bare network: lucent applies its own ImageNet normalization
    seconds = {}
    for unit in classes:
        for seed in seeds:
            image, seconds[f"{unit}_{seed}"] = lucent_render(net, unit, seed, steps)
            save_png(image, out / "lucent" / f"{unit}_{seed}.png")
            print(unit, seed, round(seconds[f"{unit}_{seed}"], 1), flush=True)
    (out / "lucent" / "seconds.json").write_text(json.dumps(seconds, indent=2))
    return 0


def featviz_rows(sweep: Path) -> list[dict[str, Any]]:
    """One row per completed run of the sweep: its rung, class, seed and final metrics."""
    rows = []
    for result in sorted(sweep.glob("*/result.json")):
        r = json.loads(result.read_text())
        if r.get("status") != "completed":
            continue
        f = r["final"]
        rows.append({"side": r["config"]["pipeline"]["technique"], "class": r["config"]["objective"]["unit"], "seed": r["config"]["seed"],
                     "top1": f["transfer/top1"], "moderate_top1": f["transfer/moderate_top1"], "colourfulness": f["colourfulness"],
                     "rms_contrast": f["rms_contrast"], "hf_share": f["hf_share"], "seconds": f["wall_time_s"], "image": result.parent / "final.png"})
    return rows


def lucent_rows(folder: Path) -> list[dict[str, Any]]:
    """lucent's PNGs scored like a featviz run: the metrics callback's transfer scores and image metrics."""
    import torch

    from featviz.images import load_png
    from featviz.metrics.callback import MetricsCallback
    from featviz.metrics.image import image_metrics
    from featviz.models import build_model

    seconds = json.loads((folder / "lucent" / "seconds.json").read_text())
    judge = build_model("efficientnet_lite1")
    scorer = MetricsCallback(views=16, eval_model=judge)  # metrics.views and view_seed as conf/metrics/default.yaml
    rows = []
    for key, took in seconds.items():
        unit, seed = (int(v) for v in key.split("_"))
        path = folder / "lucent" / f"{key}.png"
        image = load_png(path)[None]
        with torch.no_grad():
            f = {**scorer.transfer(judge, image, [unit]), **image_metrics(image)}
        rows.append({"side": "lucent", "class": unit, "seed": seed, "top1": f["transfer/top1"], "moderate_top1": f["transfer/moderate_top1"],
                     "colourfulness": f["colourfulness"], "rms_contrast": f["rms_contrast"], "hf_share": f["hf_share"], "seconds": took, "image": path})
    return rows


def table(rows: list[dict[str, Any]], sides: list[str]) -> str:
    """Markdown: per class (mean over seeds) each side's top-1 / moderate top-1 / colourfulness / contrast, then per side."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    classes = sorted({r["class"] for r in rows})
    lines = ["| class | " + " | ".join(f"{s} top1 / moderate / colour / contrast" for s in sides) + " |", "|" + "---|" * (1 + len(sides))]
    for unit in classes:
        cells = []
        for side in sides:
            mine = [r for r in rows if r["side"] == side and r["class"] == unit]
            cells.append(" / ".join(f"{mean([r[c] for r in mine]):.{p}f}" for c, p in zip(COLUMNS[:4], (2, 2, 0, 3))) if mine else "-")
        lines.append(f"| {unit} | " + " | ".join(cells) + " |")
    lines += ["", "| side | runs | transfer top1 | moderate-view top1 | colourfulness median (min-max over runs) | RMS contrast median | hf_share median | s/run median |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for side in sides:
        mine = [r for r in rows if r["side"] == side]
        if mine:
            colour = [r["colourfulness"] for r in mine]
            lines.append(f"| {side} | {len(mine)} | {mean([r['top1'] for r in mine]):.3f} | {mean([r['moderate_top1'] for r in mine]):.3f} | "
                         f"{statistics.median(colour):.1f} ({min(colour):.1f}-{max(colour):.1f}) | {statistics.median(r['rms_contrast'] for r in mine):.3f} | "
                         f"{statistics.median(r['hf_share'] for r in mine):.3f} | {statistics.median(r['seconds'] for r in mine):.0f} |")
    return "\n".join(lines)


def picture(rows: list[dict[str, Any]], sides: list[str], out: Path, size: int) -> None:
    """One row of final images per side (seed 0), one column per class, ``size`` px each."""
    import torch

    from featviz.images import grid, load_image, save_png

    classes = sorted({r["class"] for r in rows if r["side"] == sides[0]})
    found = {(r["side"], r["class"]): r["image"] for r in rows if r["seed"] == 0}
    tiles = [load_image(found[(s, c)], size) if (s, c) in found else torch.ones(3, size, size) for s in sides for c in classes]
    save_png(grid(torch.stack(tiles), nrow=len(classes)), out)
    print(f"{out}: rows {', '.join(sides)}; columns classes {', '.join(map(str, classes))}")


def photo_stats(folder: Path) -> None:
    """The image statistics of a reference folder at 128 px: every photo, and the colour photos' quartiles."""
    import torch

    from featviz.metrics.image import image_metrics
    from featviz.metrics.reference import ReferenceSet

    ref = ReferenceSet.from_folder(folder)
    photos = ref.images(128)
    rows = [image_metrics(photos[i : i + 1]) for i in range(len(photos))]
    for path, r in zip(ref.paths, rows):
        print(path.name, {k: round(v, 3) for k, v in r.items()})
    colour = [r for r in rows if r["colourfulness"] > 1]  # grayscale photos have none
    for key in ("colourfulness", "rms_contrast", "saturation"):
        v = torch.tensor([r[key] for r in colour])
        print(f"{len(colour)} colour photos, {key}: min {v.min():.3f} q25 {v.quantile(0.25):.3f} median {v.median():.3f} q75 {v.quantile(0.75):.3f} max {v.max():.3f}")


def param_time(size: int = 128, reps: int = 50) -> None:
    """One forward + backward of ``MacoImage`` and ``VividMacoImage``, 1 thread, alternated twice: the parameterization's own cost."""
    import time

    import torch

    from featviz.params import MacoImage, VividMacoImage

    torch.set_num_threads(1)
    for cls in (MacoImage, VividMacoImage, MacoImage, VividMacoImage):
        p = cls(size, generator=torch.Generator().manual_seed(0))
        for _ in range(5):
            p().sum().backward()
        t0 = time.perf_counter()
        for _ in range(reps):
            p().sum().backward()
        print(f"{cls.__name__}: {(time.perf_counter() - t0) / reps * 1000:.2f} ms per forward + backward ({size} px)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lucent", type=Path, help="render lucent's side into this folder (LUCENT_VENV names its venv)")
    parser.add_argument("--classes", default="1,130,281,417,511,947,954,980")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--lucent-steps", type=int, default=LUCENT_STEPS)
    parser.add_argument("--table", type=Path, help="the +experiment=vivid sweep folder")
    parser.add_argument("--lucent-dir", type=Path, help="a --lucent folder whose images join the table")
    parser.add_argument("--sides", default="lucent,default,best,vivid_offset,vivid_free,vivid")
    parser.add_argument("--picture", type=Path, help="save a side-by-side PNG of the sides' images here")
    parser.add_argument("--tile", type=int, default=96, help="side of each image in --picture")
    parser.add_argument("--photo-stats", type=Path, help="print a reference folder's image statistics")
    parser.add_argument("--param-time", action="store_true", help="time MacoImage against VividMacoImage")
    parser.add_argument("--lucent-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    classes, seeds = [int(c) for c in args.classes.split(",")], [int(s) for s in args.seeds.split(",")]
    if args.lucent_worker:
        return lucent_worker(classes, seeds, args.lucent_steps, args.lucent)
    if args.photo_stats:
        photo_stats(args.photo_stats)
    if args.param_time:
        param_time()
    if args.lucent:
        venv = os.environ.get("LUCENT_VENV")
        if not venv:
            raise SystemExit("set LUCENT_VENV to the virtual environment with torch-lucent (benchmarks/README.md says how to make it)")
        (args.lucent / "lucent").mkdir(parents=True, exist_ok=True)
        cmd = [str(Path(venv) / "bin" / "python"), __file__, "--lucent-worker", "--classes", args.classes, "--seeds", args.seeds,
               "--lucent-steps", str(args.lucent_steps), "--lucent", str(args.lucent)]
        subprocess.run(cmd, cwd=REPO, check=True)
    if args.table:
        rows = featviz_rows(args.table) + (lucent_rows(args.lucent_dir) if args.lucent_dir else [])
        sides = [s for s in args.sides.split(",") if any(r["side"] == s for r in rows)]
        print(table(rows, sides))
        print(f"\nload average (1, 5, 15 min): {tuple(round(v, 2) for v in os.getloadavg())}")
        if args.picture:
            picture(rows, sides, args.picture, args.tile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
