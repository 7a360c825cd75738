"""Throw a table of bad inputs at the command line and print what each one ends in.

    .venv/bin/python benchmarks/bad_inputs.py [--out docs/bad_inputs.md]

Each case runs ``python -m featviz ...`` at a tiny size in its own folder and is scored:
exit code, the one ``featviz:`` line (or Hydra's ``full_key`` line for a type error caught
while composing), whether a traceback was printed, and the ``status`` of ``result.json``
when one was written. A case passes when it exits non-zero without a traceback and names
the key. The Markdown table goes to ``--out``.
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
SMALL = ["logger=none", "progress=false", "metrics.enabled=false", "param.size=32", "objective.layer=blocks.3", "steps=2"]

# (what a user typed, the key the message must name)
CASES: list[tuple[list[str], str]] = [
    (["param.size=abc"], "param.size"),
    (["steps=1.5"], "steps"),
    (["batch=1.5"], "batch"),
    (["steps=abc"], "steps"),
    (["steps=0"], "steps"),
    (["snapshots=[0,1.5]"], "snapshots"),
    (["objective.negate=maybe"], "negate"),
    (["param.decorrelate=perhaps"], "decorrelate"),
    (["param.value_range=soft"], "value_range"),
    (["param.bogus=1"], "bogus"),
    (["param=fourier"], "param"),
    (["param.sd=nan"], "param.sd"),
    (["param.sd=-1"], "param.sd"),
    (["transforms.rotate=nan"], "transforms.rotate"),
    (["transforms.rotate=inf"], "transforms.rotate"),
    (["transforms.jitter=abc"], "transforms.jitter"),
    (["transforms.jitter=-2"], "transforms.jitter"),
    (["transforms.scale=[1,inf]"], "transforms.scale"),
    (["transforms.scale=[2]"], "transforms.scale"),
    (["transforms.pad_mode=mirror"], "pad_mode"),
    (["optimizer.lr=inf"], "optimizer.lr"),
    (["optimizer.lr=-1"], "optimizer.lr"),
    (["optimizer._target_=os.system"], "optimizer._target_"),
    (["optimizer._target_=torch.optim.LBFGS"], "optimizer._target_"),
    (["optimizer._target_=torch.optim.Nope"], "optimizer._target_"),
    (["regularizer.tv=-1"], "regularizer.tv"),
    (["regularizer.diversity_kind=cosine"], "diversity_kind"),
    (["metrics.hf_cutoff=0.9"], "metrics.hf_cutoff"),
    (["logger.mode=sometimes"], "logger.mode"),
    (["logger.log_every=0"], "logger.log_every"),
    (["device=tpu"], "device"),
    (["device=meta"], "device"),
    (["threads=0"], "threads"),
    (["threads=many"], "threads"),
    (["metrics.reference=/nonexistent/photos"], "/nonexistent/photos"),
    (["metrics.eval_model=nosuchnet"], "metrics.eval_model"),
    (["metrics.exemplar_quantile=0.7"], "metrics.exemplar_quantile"),
    (["isolate=maybe"], "isolate"),
    (["checkpoint_every=-1"], "checkpoint_every"),
    (["model=nosuchnet"], "model"),
    (["model.name=nosuchnet"], "nosuchnet"),
    (["objective.layer=blocks.99"], "blocks.99"),
    (["objective.unit=5000"], "0..39"),
    (["model=custom", "model.net={_target_:collections.OrderedDict}"], "model.net"),
    (["layers", "model.name=nosuchnet"], "nosuchnet"),
]


def run_case(args: list[str], key: str, folder: Path) -> dict[str, object]:
    command = args if args[0] == "layers" else [*SMALL, *args, f"hydra.run.dir={folder}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "featviz", *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("featviz")]
    hydra = [line.strip() for line in proc.stderr.splitlines() if line.strip().startswith(("full_key:", "Could not", "Error merging", "Value '", "In 'config'"))]
    message = lines[0] if lines else " / ".join(hydra[:2])
    result = folder / "result.json"
    status = json.loads(result.read_text()).get("status") if result.is_file() else "-"
    ok = proc.returncode != 0 and "Traceback" not in proc.stderr and key in (message + proc.stderr)
    return {"input": " ".join(args), "exit": proc.returncode, "traceback": "Traceback" in proc.stderr, "status": status,
            "message": message[:160], "ok": ok, "seconds": round(time.time() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (case, key) in enumerate(CASES):
            row = run_case(case, key, Path(tmp) / str(i))
            rows.append(row)
            print(f"{'ok ' if row['ok'] else 'BAD'} {row['exit']:>3} {row['status']:<10} {row['input']:<55} {row['message']}", flush=True)
    table = ["| input | exit | traceback | result.json | message |", "|---|---|---|---|---|"]
    table += [f"| `{r['input']}` | {r['exit']} | {'yes' if r['traceback'] else 'no'} | {r['status']} | {str(r['message']).replace('|', '/')} |" for r in rows]
    bad = [r for r in rows if not r["ok"]]
    table.append(f"\n{len(rows) - len(bad)} of {len(rows)} cases end in a clean error naming the key.")
    if args.out:
        args.out.write_text("\n".join(table) + "\n")
    print(table[-1])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
