"""Units per hour of ``featviz microscope``: one layer's first units, whole processes, as a user runs it.

Not a test: a measurement to run by hand (docs/microscope.md has the figures). Each row is
one ``python -m featviz microscope`` process (Hydra, model build and folding, the render
children, the site), timed from outside, beside the optimization time the shards recorded
(their units' ``seconds``, which leave out start-up). The load average before and after is
printed with every row: on a shared machine a figure means little without it. ::

    python benchmarks/microscope_rate.py --layer blocks.1 --units 8
    python benchmarks/microscope_rate.py --layer blocks.1 --units 16 --shards 2 --launcher joblib --steps 64

Extra ``key=value`` arguments go to the command (e.g. ``microscope.batch=16``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="blocks.1")
    parser.add_argument("--units", type=int, default=8, help="units 0..N-1 of the layer")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--launcher", default="local", help="local (shards one after another) | joblib (in parallel)")
    parser.add_argument("--steps", type=int, default=None, help="default: the microscope's (conf/microscope.yaml)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        cmd = [sys.executable, "-m", "featviz", "microscope", f"microscope.layers=[{args.layer}]", f"microscope.units=[{','.join(map(str, range(args.units)))}]",
               f"microscope.shards={args.shards}", f"launcher={args.launcher}", "progress=false", f"hydra.sweep.dir={sweep}", *args.overrides]
        if args.steps is not None:
            cmd.append(f"steps={args.steps}")
        if args.launcher == "joblib":
            cmd.append(f"hydra.launcher.n_jobs={args.shards}")
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()[0]
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        finals = [json.loads(p.read_text())["final"] for p in sorted(sweep.glob("*/result.json"))]
        config = json.loads(next(sweep.glob("*/result.json")).read_text())["config"]
    optimizing = sum(f["seconds"] for f in finals)
    row = {
        "layer": args.layer, "units": args.units, "steps": config["steps"], "batch": config["microscope"]["batch"], "size": config["param"]["size"],
        "shards": args.shards, "launcher": args.launcher, "wall_s": round(wall, 1), "optimization_s": round(optimizing, 1),
        "units_per_hour_wall": round(args.units / wall * 3600), "units_per_hour_optimizing_per_shard": round(args.units / optimizing * 3600),
        "load_before": round(load_before, 2), "load_after": round(load_after, 2), "cpus": os.cpu_count(),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
