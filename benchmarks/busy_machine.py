"""Steps/s of a default render, idle and beside CPU hogs, under each thread policy.

    .venv/bin/python benchmarks/busy_machine.py [--steps 64] [--hogs 2] [--rounds 2]

Each case runs ``python -m featviz`` (the default render: 128 px FFT image, the standard
transforms, EfficientNet-Lite0 at 224 px) with ``logger=none metrics.enabled=false`` and
reads ``steps_per_s`` from its ``result.json`` (the loop alone, not the start-up). A
case's environment variables are set before the process starts, so libgomp sees them when
torch loads it. Each round runs every case idle, then every case beside ``--hogs``
processes spinning ``while True: pass``; the cases alternate, so a drift of the machine
shows in all of them. The 1-minute load average before each run is printed beside it (the
hogs count in it): the figures only mean something when nothing else was running.
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

REPO = Path(__file__).resolve().parent.parent
# (label, extra environment, extra overrides)
CASES: list[tuple[str, dict[str, str], list[str]]] = [
    ("threads=null, spin (torch's default)", {"OMP_WAIT_POLICY": "ACTIVE"}, ["threads=null"]),
    ("threads=null, OMP_WAIT_POLICY=PASSIVE alone", {"OMP_WAIT_POLICY": "PASSIVE"}, ["threads=null"]),
    ("threads=null, PASSIVE + GOMP_SPINCOUNT=10000 (featviz's default)", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}, ["threads=null"]),
    ("threads=1", {"OMP_WAIT_POLICY": "ACTIVE"}, ["threads=1"]),
    ("threads=auto, spin", {"OMP_WAIT_POLICY": "ACTIVE"}, ["threads=auto"]),
    ("threads=auto, featviz's default waiting", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}, ["threads=auto"]),
]


def one_run(env_extra: dict[str, str], overrides: list[str], steps: int) -> float:
    """steps/s of one default render with ``env_extra`` and ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "featviz", f"steps={steps}", "logger=none", "metrics.enabled=false", "progress=false",
               "activation_every=0", "checkpoint_every=0", f"hydra.run.dir={tmp}", *overrides]
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
        return float(json.loads((Path(tmp) / "result.json").read_text())["final"]["steps_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--hogs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cases", default="", help="comma-separated case numbers (default: all)")
    args = ap.parse_args()
    chosen = [CASES[int(i)] for i in args.cases.split(",")] if args.cases else CASES
    idle: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in chosen}
    busy: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in chosen}
    for _ in range(args.rounds):
        # Every case once idle, then every case once beside the hogs: the cases alternate, so
        # they share whatever the machine was doing at the time.
        for label, env, overrides in chosen:
            idle[label].append((os.getloadavg()[0], one_run(env, overrides, args.steps)))
            print(f"idle  load {idle[label][-1][0]:.1f}  {idle[label][-1][1]:6.2f} steps/s  {label}", flush=True)
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
        try:
            time.sleep(1.0)
            for label, env, overrides in chosen:
                busy[label].append((os.getloadavg()[0], one_run(env, overrides, args.steps)))
                print(f"busy  load {busy[label][-1][0]:.1f}  {busy[label][-1][1]:6.2f} steps/s  {label}", flush=True)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    print(f"| policy | load before each idle run | steps/s idle | load | steps/s beside {args.hogs} hogs | busy / idle |\n|---|---:|---:|---:|---:|---:|")
    for label, _, _ in chosen:
        cols = [" / ".join(f"{x[i]:.{1 if i == 0 else 2}f}" for x in runs) for runs in (idle[label], busy[label]) for i in (0, 1)]
        ratio = sum(s for _, s in busy[label]) / sum(s for _, s in idle[label])
        print(f"| {label} | {' | '.join(cols)} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
