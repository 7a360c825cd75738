"""preset=best against the default pipeline and torch-lucent's default render_vis, on ImageNet classes.

Not a test: a measurement, to run by hand (see benchmarks/README.md). Every image is scored
from outside the network that made it, the same way for all three sides: ``transfer/top1``
and ``transfer/prob`` of its class on EfficientNet-Lite1 (the final image resized to the
eval network's input, no other transform) and ``hf_share``, the share of its spectral power
above half Nyquist (featviz.metrics). The featviz sides run through the CLI (one multirun
each: ``preset=best`` and the default config), so they are exactly what a user gets; lucent
runs ``render_vis`` with its defaults (128 px decorrelated FFT image, its standard
transforms, Adam 0.05, 512 steps) on the same embedded EfficientNet-Lite0 object, in its
own virtual environment (it pins ``kornia<=0.4.1``)::

    LUCENT_VENV=../venvs/lucent    # see benchmarks/vs_lucent.py for making it
    python benchmarks/best_pipeline.py --out outputs/best_pipeline              # 16 classes x 3 sides
    python benchmarks/best_pipeline.py --classes 281,947 --sides best,default   # a subset
    python benchmarks/best_pipeline.py --out outputs/best_pipeline --table-only # the table again
    python benchmarks/best_pipeline.py --out outputs/bp_seed1 --seeds 1 --merge outputs/best_pipeline  # one table of both

It prints one row per class and side, then the mean top-1, the median hf_share and the
median seconds per run of each side, with the machine's load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: 16 ImageNet classes: animals, objects, food and scenes, some fine-grained (the tabby cat).
CLASSES = (1, 9, 130, 281, 309, 323, 417, 430, 511, 817, 934, 947, 954, 963, 980, 988)
SIDES = {"best": ["preset=best"], "default": []}
LUCENT_STEPS = 512  # render_vis's default threshold


def featviz_side(side: str, out: Path, classes: str, seeds: str, extra: list[str]) -> None:
    """One multirun of the CLI over classes x seeds."""
    cmd = [sys.executable, "-m", "featviz", "-m", *SIDES[side], "objective=class_logit", f"objective.unit={classes}", f"seed={seeds}",
           "logger=none", "progress=false", f"hydra.sweep.dir={out / side}", *extra]
    print("+ python", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def featviz_rows(out: Path, side: str) -> list[dict[str, Any]]:
    rows = []
    for result in sorted((out / side).glob("*/result.json")):
        r = json.loads(result.read_text())
        if r.get("status") != "completed":
            continue
        f = r["final"]
        rows.append({"side": side, "class": r["config"]["objective"]["unit"], "seed": r["config"]["seed"], "top1": f.get("transfer/top1"),
                     "prob": f.get("transfer/prob"), "hf_share": f.get("hf_share"), "seconds": f.get("wall_time_s")})
    return rows


def lucent_render(net: Any, unit: int, seed: int, steps: int) -> tuple[Any, float]:
    """In the lucent venv: ``render_vis`` with its defaults for ImageNet class ``unit``: ``[1, 3, 128, 128]`` and its seconds."""
    import numpy as np
    import torch
    from lucent.optvis import objectives, param, render, transform

    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    images = render.render_vis(net, objectives.channel("fc", unit), param_f=lambda: param.image(128, decorrelate=True, fft=True),
                               transforms=transform.standard_transforms, thresholds=(steps,), progress=False, show_image=False)
    return torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float(), time.perf_counter() - t0


def lucent_worker(classes: list[int], seeds: list[int], steps: int, out: Path) -> int:
    """Runs in the lucent venv: render_vis with its defaults per class and seed; scored with featviz.metrics."""
    sys.path.insert(0, str(REPO))
    import torch

    from featviz.images import save_png
    from featviz.metrics.image import high_frequency_share
    from featviz.metrics.views import class_scores, resize_square
    from featviz.models import build_model

    judge = build_model("efficientnet_lite1")
    net = build_model("efficientnet_lite0").net  # the bare network: lucent applies its own ImageNet normalization
    rows = []
    for unit in classes:
        for seed in seeds:
            image, seconds = lucent_render(net, unit, seed, steps)
            save_png(image, out / "lucent" / f"{unit}_{seed}.png")
            with torch.no_grad():
                scores = class_scores(judge(resize_square(image, judge.input_size), ["logits"])["logits"], [unit])
            rows.append({"side": "lucent", "class": unit, "seed": seed, "top1": scores["top1"], "prob": scores["prob"],
                         "hf_share": float(high_frequency_share(image).mean()), "seconds": seconds})
            print(json.dumps(rows[-1]), flush=True)
    (out / "lucent" / "rows.json").write_text(json.dumps(rows, indent=2))
    return 0


def lucent_side(out: Path, classes: str, seeds: str, steps: int) -> None:
    venv = os.environ.get("LUCENT_VENV")
    if not venv:
        raise SystemExit("set LUCENT_VENV to the virtual environment with torch-lucent (benchmarks/vs_lucent.py says how to make it)")
    (out / "lucent").mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(venv) / "bin" / "python"), __file__, "--lucent-worker", "--classes", classes, "--seeds", seeds,
           "--lucent-steps", str(steps), "--out", str(out)]
    subprocess.run(cmd, cwd=REPO, check=True)


def table(rows: list[dict[str, Any]], sides: list[str]) -> str:
    """Markdown: one row per class (mean over seeds) with each side's top-1 / prob / hf_share, then the summary."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    classes = sorted({r["class"] for r in rows})
    head = "| class | " + " | ".join(f"{s} top1 | {s} prob | {s} hf_share" for s in sides) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(sides))]
    for unit in classes:
        cells = []
        for side in sides:
            mine = [r for r in rows if r["side"] == side and r["class"] == unit]
            cells += [f"{mean([r['top1'] for r in mine]):.2f}", f"{mean([r['prob'] for r in mine]):.3f}", f"{mean([r['hf_share'] for r in mine]):.3f}"]
        lines.append(f"| {unit} | " + " | ".join(cells) + " |")
    lines += ["", "| side | runs | mean top1 | mean prob | median hf_share | median s/run |", "|---|---|---|---|---|---|"]
    for side in sides:
        mine = [r for r in rows if r["side"] == side]
        if mine:
            lines.append(f"| {side} | {len(mine)} | {mean([r['top1'] for r in mine]):.3f} | {mean([r['prob'] for r in mine]):.3f} | "
                         f"{statistics.median(r['hf_share'] for r in mine):.3f} | {statistics.median(r['seconds'] for r in mine):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--sides", default="best,default,lucent")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "best_pipeline")
    parser.add_argument("--lucent-steps", type=int, default=LUCENT_STEPS)
    parser.add_argument("--table-only", action="store_true", help="only read the runs in --out and print the table")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="earlier --out folders whose runs join the table (other classes or seeds)")
    parser.add_argument("--lucent-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="overrides for both featviz sides, e.g. threads=2")
    args = parser.parse_args(argv)
    classes, seeds = [int(c) for c in args.classes.split(",")], [int(s) for s in args.seeds.split(",")]
    if args.lucent_worker:
        return lucent_worker(classes, seeds, args.lucent_steps, args.out)
    sides = [s for s in args.sides.split(",") if s]
    load = [os.getloadavg()]
    if not args.table_only:
        for side in sides:
            if side == "lucent":
                lucent_side(args.out, args.classes, args.seeds, args.lucent_steps)
            else:
                featviz_side(side, args.out, args.classes, args.seeds, args.extra)
            load.append(os.getloadavg())
    rows = []
    for folder in [args.out, *args.merge]:
        rows += [r for side in sides if side != "lucent" for r in featviz_rows(folder, side)]
        lucent_rows = folder / "lucent" / "rows.json"
        if "lucent" in sides and lucent_rows.is_file():
            rows += json.loads(lucent_rows.read_text())
    if not args.merge:
        rows = [r for r in rows if r["class"] in classes]
    unique: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in rows:
        if r["top1"] is not None:  # a class and seed found twice counts once: the first folder's
            unique.setdefault((r["side"], r["class"], r["seed"]), r)
    rows = list(unique.values())
    print(table(rows, sides))
    print(f"\nload average (1, 5, 15 min) before and after each side: {[tuple(round(v, 2) for v in x) for x in load]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
