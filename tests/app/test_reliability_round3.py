"""Reliability round three (issue 24) at the command line: each mistake or fault ends in one line
and an honest folder; the outcome is checked (message, exit code, result.json, files), not only
the absence of a traceback. The table of docs/errors.md is run by test_error_table.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from conftest import run_cli

SMALL = ["logger=none", "progress=false", "metrics.enabled=false", "param.size=32", "objective.layer=blocks.3", "steps=2"]


def _one_line(proc, message: str, code: int = 2) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("featviz")]
    assert proc.returncode == code and len(lines) == 1 and message in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_render_help_is_featviz_own_page() -> None:
    proc = run_cli("render", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "== Configuration groups ==" in out and re.search(r"^  objective: .*channel", out, re.M) and "steps=" in out
    assert "schema" not in out and len(out.splitlines()) < 60  # Hydra's page: 179 lines listing schema/* groups
    assert run_cli("microscope", "--help").stdout.count("microscope.shards=") == 1


def test_a_tag_wandb_would_refuse_is_refused_before_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tag = "x" * 70
    args = [a for a in SMALL if a != "logger=none"]
    _one_line(run_cli(*args, "logger.mode=offline", f"tags=[{tag}]", f"hydra.run.dir={out}"), "is 70 characters; W&B takes tags of 1 to 64")
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed" and "70 characters" in result["error"]["message"]  # not "completed" with tracking off
    assert not (out / "final.png").exists()


def test_a_checkpoint_from_another_tool_is_one_plain_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    torch.save(torch.nn.Linear(2, 2), out / "checkpoint.pt")  # a whole pickled module: torch's weights_only load refuses it
    line = _one_line(run_cli(*SMALL, f"hydra.run.dir={out}"), "is not a readable featviz checkpoint")
    assert "\x1b" not in line and line.endswith("delete it to start the run over")


def test_a_corrupt_reference_photo_is_refused_before_the_first_step(tmp_path: Path) -> None:
    ref, out = tmp_path / "ref", tmp_path / "run"
    ref.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(ref / f"{i}.jpg")
    data = (ref / "1.jpg").read_bytes()
    (ref / "1.jpg").write_bytes(data[: len(data) // 2])
    args = [a for a in SMALL if a != "metrics.enabled=false"]
    _one_line(run_cli(*args, f"metrics.reference={ref}", f"hydra.run.dir={out}"), f"'{ref / '1.jpg'}' is not a readable image")
    assert not (out / "metrics.jsonl").exists() and not (out / "snapshots").exists()  # refused before the first step


def test_a_size_that_cannot_fit_is_refused_with_the_numbers_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = _one_line(run_cli(*SMALL, "param.size=100000", "device=cpu", f"hydra.run.dir={out}"), "param.size=100000 with batch=1 needs at least")
    assert re.search(r"but [\d.]+ GiB of memory is free; lower param.size or batch", line)
    assert json.loads((out / "result.json").read_text())["status"] == "failed"


def test_report_names_missing_jobs_unreadable_snapshots_and_bad_flags(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    assert run_cli("-m", *SMALL, "objective.unit=1,2,3", f"hydra.sweep.dir={sweep}").returncode == 0
    (sweep / "1" / "result.json").unlink()  # a job killed before it wrote one
    (sweep / "2" / "snapshots" / "step_0.png").write_bytes(b"")  # a 0-byte snapshot a full disk left
    proc = run_cli("report", str(sweep))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"missing: {sweep / '1'}: missing: no readable result.json" in proc.stdout
    assert f"left out (unreadable) 0: {sweep / '2' / 'snapshots' / 'step_0.png'}" in proc.stdout
    page = (sweep / "report" / "report.html").read_text()
    assert "3 runs (2 completed, 1 missing)" in page and "job 1 missing" in page
    _one_line(run_cli("report", str(sweep), "--steps", "x"), "--steps 'x' must be comma-separated snapshot step numbers")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line(run_cli("report", str(sweep), "--out", str(a_file)), f"--out {a_file} is a file")
    _one_line(run_cli("report", str(sweep), "--out", str(a_file / "sub")), f"cannot write the report in {a_file / 'sub'}: Not a directory")
