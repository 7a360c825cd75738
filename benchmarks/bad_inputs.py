"""Throw a table of bad inputs at the command line and print what each one ends in.

    .venv/bin/python benchmarks/bad_inputs.py [--out docs/bad_inputs.md]

Each case runs ``python -m featviz ...`` at a tiny size in its own folder and is scored:
exit code, the one ``featviz`` line, whether a traceback was printed, and the ``status`` of
``result.json`` when one was written. A case passes when it exits 2 (every command's usage
error, :mod:`featviz.app.reporting`) with exactly one ``featviz`` line, no traceback, and the
key named. Cases of round three (issue 24) take files: ``{bomb}`` is a PNG whose header
claims 20000x20000, ``{photos}`` a folder holding a truncated JPEG, ``{file}`` a plain file,
``{sweep}`` an empty folder. The Markdown table goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
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
    # round three (issue 24): the new surfaces
    (["param.init_image={bomb}"], "20000x20000"),
    (["metrics.enabled=true", "metrics.reference={photos}"], "1.jpg"),
    (["param.size=100000", "device=cpu"], "param.size=100000"),
    (["batch=100000000", "device=cpu"], "batch=100000000"),
    (["seed=4294967296"], "seed=4294967296"),
    (["seed=-1"], "seed=-1"),
    (["tags=[" + "x" * 70 + "]", "logger=wandb", "logger.mode=offline"], "tags"),
    (["objective=chanel"], "channel"),
    (["model=resnt"], "resnet"),
    (["preset=bset"], "best"),
    (["objective.uint=3"], "objective.unit"),
    (["layer"], "layers"),
    (["layers", "size=224"], "+size"),
    (["layers", "model=nosuchnet"], "model=nosuchnet"),
    (["checkerboard", "objective.uint=3"], "objective.unit"),
    (["report", "{sweep}"], "result.json"),
    (["report", "{sweep}", "--steps", "x"], "report"),
    (["microscope", "microscope.shards=0"], "microscope.shards"),
    (["microscope", "microscope.shards=-1"], "microscope.shards"),
    (["microscope", "microscope.examples=0"], "microscope.examples"),
    (["microscope-site", "{sweep}", "--out", "{file}"], "--out"),
    (["units", "units.batch=0"], "units.batch"),
]
COMMANDS = ("layers", "checkerboard", "report", "microscope", "microscope-site", "units", "layer")


def fixtures(root: Path) -> dict[str, str]:
    """The files the round-three cases name: a bomb header, a folder with a truncated photo, a file, an empty sweep."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    bomb = root / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    photos = root / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(2):
        Image.new("RGB", (48, 40), (60 * i, 0, 0)).save(photos / f"{i}.jpg")
    (photos / "1.jpg").write_bytes((photos / "1.jpg").read_bytes()[:300])
    (root / "file").write_text("x")
    (root / "sweep").mkdir(exist_ok=True)
    return {"bomb": str(bomb), "photos": str(photos), "file": str(root / "file"), "sweep": str(root / "sweep")}


def run_case(args: list[str], key: str, folder: Path, files: dict[str, str]) -> dict[str, object]:
    for name, path in files.items():
        args = [a.replace("{" + name + "}", path) for a in args]
    if args[0] in ("microscope", "units"):
        command = [*args, "steps=1", "progress=false", f"hydra.{'sweep' if args[0] == 'microscope' else 'run'}.dir={folder}"]
    elif args[0] in COMMANDS:
        command = args
    else:
        command = [*SMALL, *args, f"hydra.run.dir={folder}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "featviz", *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("featviz")]
    message = lines[0] if lines else ""
    result = folder / "result.json"
    status = json.loads(result.read_text()).get("status") if result.is_file() else "-"
    ok = proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr and key in message
    return {"input": " ".join(args), "exit": proc.returncode, "traceback": "Traceback" in proc.stderr, "status": status,
            "message": message[:160], "ok": ok, "seconds": round(time.time() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = fixtures(Path(tmp) / "files")
        for i, (case, key) in enumerate(CASES):
            row = run_case(case, key, Path(tmp) / str(i), files)
            rows.append(row)
            print(f"{'ok ' if row['ok'] else 'BAD'} {row['exit']:>3} {row['status']:<10} {row['input']:<55} {row['message']}", flush=True)
    table = ["| input | exit | traceback | result.json | message |", "|---|---|---|---|---|"]
    table += [f"| `{str(r['input'])[:60]}` | {r['exit']} | {'yes' if r['traceback'] else 'no'} | {r['status']} | {str(r['message']).replace('|', '/')[:200]} |" for r in rows]
    bad = [r for r in rows if not r["ok"]]
    table.append(f"\n{len(rows) - len(bad)} of {len(rows)} cases end in one line naming the key, exit code 2.")
    if args.out:
        args.out.write_text("\n".join(table) + "\n")
    print(table[-1])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
