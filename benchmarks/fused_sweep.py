"""A sweep as one computation: the same multirun with ``launcher=fused`` and with the default launcher.

Not a test: a measurement, to run by hand on an idle machine (see benchmarks/README.md).
Each side is the whole command a user types (``python -m featviz -m ...``), so start-up,
composing, W&B and end-of-run metrics are in the figure; the two sides alternate, and the
median of ``--reps`` is reported with the load average seen around each run. Two sweeps:

* ``spectrum``: ``+experiment=spectrum`` at its defaults (54 jobs: 18 families x 3 levels;
  pixel, FFT, CPPN, MACO, Laplacian, denoiser and patch priors, transforms, ...), and
* ``tv_seed``: a 16-job ``regularizer.tv x seed`` sweep at the default config,

each optionally shortened with ``--steps`` (said in the output). The fused and default
sweeps' ``result.json`` give each job's final objective twice, so the packed-vs-solo
difference is reported too. ``--curve`` instead times one step of a pack of N default jobs
in-process (N = 1, 2, 4, ..., 64): the per-step batch curve::

    python benchmarks/fused_sweep.py --sweep tv_seed --steps 64 --reps 3 --out benchmarks/results/fused_tv_seed.json
    python benchmarks/fused_sweep.py --curve --out benchmarks/results/fused_curve.json
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

SWEEPS = {
    "spectrum": ["+experiment=spectrum"],
    "tv_seed": ["regularizer.tv=0,0.05,0.25,1", "seed=0,1,2,3"],
}


def sweep(args: list[str], launcher: str, threads: int, out: Path) -> dict[str, object]:
    """One whole multirun; its wall time and each job's final objective and status."""
    command = [sys.executable, "-m", "featviz", "-m", *args, f"launcher={launcher}", f"threads={threads}", "progress=false",
               f"hydra.sweep.dir={out}"]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{launcher} sweep crashed:\n{proc.stderr[-2000:]}")
    results = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}
    return {"wall_s": wall, "load_before": load, "load_after": os.getloadavg()[0],
            "objective": {j: r["final"].get("objective") for j, r in results.items()},
            "status": {j: r["status"] for j, r in results.items()}}


def compare(runs: dict[str, list[dict]]) -> dict[str, float]:
    """Relative difference of each job's final objective, fused vs default launcher (first runs)."""
    fused, basic = runs["fused"][0]["objective"], runs["local"][0]["objective"]
    diffs = sorted(abs(fused[j] - basic[j]) / max(abs(basic[j]), 1e-9) for j in basic if fused.get(j) is not None and basic[j] is not None)
    return {"jobs": len(diffs), "median_rel_diff": statistics.median(diffs), "max_rel_diff": diffs[-1],
            "share_within_1pct": sum(d <= 0.01 for d in diffs) / len(diffs)}


def curve(threads: int, sizes: list[int], steps: int) -> list[dict[str, float]]:
    """Seconds per step of a pack of N default-config jobs (seeds 0..N-1), in this process."""
    import torch

    from featviz.app.build import build_run
    from featviz.app.config import compose, to_plain
    from featviz.render import Job, render_pack

    torch.set_num_threads(threads)
    points = []
    model = None
    for n in sizes:
        jobs = []
        for seed in range(n):
            parts = build_run(to_plain(compose([f"seed={seed}", "logger=none"])), model=model)
            model = parts.model
            jobs.append(Job(parts.objective, parts.param, parts.transforms, parts.regularizers, parts.optimizer, steps=steps, generator=parts.generator))
        render_pack(model, [Job(j.objective, j.param, j.transforms, j.regularizers, j.optimizer, steps=1, generator=j.generator) for j in jobs[:1]], "cpu")
        start = time.perf_counter()
        render_pack(model, jobs, "cpu")
        per_step = (time.perf_counter() - start) / steps
        points.append({"jobs": n, "s_per_step": per_step, "images_per_s": n / per_step, "load": os.getloadavg()[0]})
        print(f"pack of {n:3d}: {per_step:6.3f} s/step  {n / per_step:6.1f} images/s  load {os.getloadavg()[0]:.1f}", flush=True)
    return points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", choices=sorted(SWEEPS), default="tv_seed")
    ap.add_argument("--steps", type=int, default=None, help="shorten every job to this many steps (default: the config's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--curve", action="store_true", help="time one step of packs of 1..64 default jobs instead")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("overrides", nargs="*", help="more key=value for every job")
    args = ap.parse_args(argv)
    if args.curve:
        report: dict[str, object] = {"curve": curve(args.threads, args.sizes, args.steps or 8), "threads": args.threads}
    else:
        extra = [*SWEEPS[args.sweep], *([f"steps={args.steps}", f"snapshots=[{args.steps}]"] if args.steps else []), *args.overrides]
        runs: dict[str, list[dict]] = {"fused": [], "local": []}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                for launcher in ("fused", "local") if rep % 2 == 0 else ("local", "fused"):
                    run = sweep(extra, launcher, args.threads, Path(tmp) / f"{launcher}-{rep}")
                    runs[launcher].append(run)
                    print(f"{launcher:6s} rep {rep}: {run['wall_s']:7.1f} s  load {run['load_before']:.1f}->{run['load_after']:.1f}", flush=True)
        median = {k: statistics.median(r["wall_s"] for r in rs) for k, rs in runs.items()}
        report = {"sweep": args.sweep, "args": extra, "threads": args.threads, "runs": runs, "median_wall_s": median,
                  "speedup": median["local"] / median["fused"], "packed_vs_solo": compare(runs)}
        print(f"{args.sweep}: fused {median['fused']:.1f} s, default {median['local']:.1f} s: {report['speedup']:.2f}x; "
              f"packed vs solo objective: {report['packed_vs_solo']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
