"""Whole processes against torch-lucent: what a user waits for, start-up and end-of-run included.

Not a test: a measurement, to run by hand on an idle machine (see benchmarks/README.md).
``vs_lucent.py`` times the optimization loop alone; this times the command a user types:

* featviz: ``python -m featviz objective=channel objective.layer=L objective.unit=U steps=512``
  with every other setting the default (128 px decorrelated FFT, the standard transforms,
  resize to 224, Adam 0.05, the offline W&B logger, the end-of-run metrics), and the same
  with ``logger=none metrics.enabled=false`` (the loop plus start-up only);
* lucent: a script that builds the same network (the embedded EfficientNet-Lite0 with its
  ImageNet weights) and calls ``render_vis`` with its defaults for the same channel and
  steps, then saves the image, in the interpreter of ``$LUCENT_VENV``.

Sides alternate (A/B, then B/A), every figure is the median of ``--reps`` processes, and the
load average is printed beside each row::

    LUCENT_VENV=../venvs/lucent python benchmarks/vs_lucent_process.py --threads 2 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"early": ("blocks.2", 3), "middle": ("blocks.8", 5)}

LUCENT_SCRIPT = """
import sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
from PIL import Image
from lucent.optvis import objectives, render
from featviz.models.efficientnet_lite import efficientnet_lite
layer, unit, steps, threads, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(threads)
net = efficientnet_lite("lite0", pretrained=True).eval()
images = render.render_vis(net, objectives.channel(layer.replace(".", "_"), unit), thresholds=(steps,), progress=False, show_image=False)
Image.fromarray((np.clip(images[-1][0], 0, 1) * 255).astype(np.uint8)).save(out)
"""


def featviz_command(layer: str, unit: int, steps: int, threads: int, out: Path, lean: bool) -> list[str]:
    lean_args = ["logger=none", "metrics.enabled=false"] if lean else []
    return [sys.executable, "-m", "featviz", "objective=channel", f"objective.layer={layer}", f"objective.unit={unit}",
            f"steps={steps}", f"threads={threads}", "progress=false", *lean_args, f"hydra.run.dir={out}"]


def lucent_command(python: str, layer: str, unit: int, steps: int, threads: int, out: Path) -> list[str]:
    return [python, "-c", LUCENT_SCRIPT, str(REPO), layer, str(unit), str(steps), str(threads), str(out / "lucent.png")]


def timed(command: list[str]) -> float:
    """Wall seconds of one process, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command[:4])} ...\n{proc.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--lucent-python", default=str(Path(os.environ.get("LUCENT_VENV", "../venvs/lucent")) / "bin" / "python"))
    ap.add_argument("--out", type=Path, default=None, help="write the timings as JSON here")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.targets.split(","):
            layer, unit = TARGETS[label]
            times: dict[str, list[float]] = {"featviz": [], "featviz-lean": [], "lucent": []}
            loads = [os.getloadavg()[0]]
            for rep in range(args.reps):
                sides = ["featviz", "featviz-lean", "lucent"] if rep % 2 == 0 else ["lucent", "featviz-lean", "featviz"]
                for side in sides:
                    out = Path(tmp) / f"{label}-{side}-{rep}"
                    command = (
                        lucent_command(args.lucent_python, layer, unit, args.steps, args.threads, out.parent)
                        if side == "lucent"
                        else featviz_command(layer, unit, args.steps, args.threads, out, lean=side == "featviz-lean")
                    )
                    times[side].append(timed(command))
                loads.append(os.getloadavg()[0])
            medians = {side: statistics.median(ts) for side, ts in times.items()}
            row = {"target": label, "layer": layer, "unit": unit, "steps": args.steps, "threads": args.threads,
                   "median_s": medians, "all_s": times, "load_average": [min(loads), max(loads)],
                   "speedup": medians["lucent"] / medians["featviz"], "speedup_lean": medians["lucent"] / medians["featviz-lean"]}
            results.append(row)
            print(f"{label:7s} {layer}:{unit}  featviz {medians['featviz']:6.1f} s  featviz lean {medians['featviz-lean']:6.1f} s  "
                  f"lucent {medians['lucent']:6.1f} s  -> {row['speedup']:.2f}x ({row['speedup_lean']:.2f}x lean)  "
                  f"load {min(loads):.1f}-{max(loads):.1f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
