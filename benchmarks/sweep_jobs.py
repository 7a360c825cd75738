"""What a sweep's jobs pay besides their loops: one basic-launcher multirun of short jobs.

Not a test: a measurement, to run by hand on an idle machine (see benchmarks/README.md).
Each sweep is ``python -m featviz -m seed=0,...,N-1 steps=S`` (isolated jobs, the default in
a multirun) with the default config otherwise (offline W&B, the end-of-run metrics), or
``--lean`` (both off); reported are the sweep's wall time,
the sum of its jobs' loops (``wall_time_s`` in each ``result.json``) and the rest per job.
``--against DIR`` runs the same sweep from another checkout too (an older commit in a
``git worktree``), alternating, to measure a change of the start-up::

    python benchmarks/sweep_jobs.py --jobs 8 --steps 32 --against ../featviz-before --reps 3 [--lean]
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


def sweep(repo: Path, jobs: int, steps: int, threads: int, lean: bool, out: Path, extra: list[str]) -> dict[str, float]:
    """One multirun from ``repo``: wall seconds, seconds in loops, and jobs that shared the model."""
    command = [sys.executable, "-m", "featviz", "-m", f"seed={','.join(map(str, range(jobs)))}", f"steps={steps}",
               f"threads={threads}", "progress=false", f"snapshots=[{steps}]", f"hydra.sweep.dir={out}",
               *(["logger=none", "metrics.enabled=false"] if lean else []), *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed in {repo}:\n{proc.stderr[-2000:]}")
    results = [json.loads((out / str(j) / "result.json").read_text()) for j in range(jobs)]
    loops = sum(r["final"]["wall_time_s"] for r in results)
    return {"wall_s": wall, "loops_s": loops, "rest_per_job_s": (wall - loops) / jobs,
            "shared_model_jobs": sum(bool(r.get("shared_model")) for r in results)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lean", action="store_true", help="logger=none metrics.enabled=false")
    ap.add_argument("--against", type=Path, default=None, help="another checkout to run the same sweep from, alternately")
    ap.add_argument("--out", type=Path, default=None, help="write the timings as JSON here")
    ap.add_argument("overrides", nargs="*", help="more key=value for every job (model=resnet50 ...)")
    args = ap.parse_args(argv)
    repos = {"this": REPO, **({"against": args.against.resolve()} if args.against else {})}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in repos}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for name in list(repos) if rep % 2 == 0 else list(repos)[::-1]:
                runs[name].append(sweep(repos[name], args.jobs, args.steps, args.threads, args.lean, Path(tmp) / f"{name}-{rep}",
                                    args.overrides))
                loads.append(os.getloadavg()[0])
    report = {"jobs": args.jobs, "steps": args.steps, "threads": args.threads, "lean": args.lean, "overrides": args.overrides, "load_average": [min(loads), max(loads)], "runs": runs,
              "median": {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}}
    for name, med in report["median"].items():
        print(f"{name:8s} sweep {med['wall_s']:6.1f} s  loops {med['loops_s']:6.1f} s  rest per job {med['rest_per_job_s']:5.2f} s  "
              f"shared model in {med['shared_model_jobs']:.0f}/{args.jobs} jobs  load {min(loads):.1f}-{max(loads):.1f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
