"""Faults a user or a cluster causes: each ends in one line, an honest result.json and a folder
nobody else wrote into (the rest of the bad-input cases are in test_bad_input.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli
from featviz.app.build import model_from_config
from featviz.checkpoint import Checkpointer
from featviz.errors import ConfigError, NonFiniteLossError, OutputError
from featviz.objectives import channel
from featviz.params import PixelImage
from featviz.render import render, resolve_device
from featviz.rundir import LOCK_NAME, RunLock

# A guard against a hung child only, far past any machine's speed: tests assert events, not time.
HANG_S = 3600
SMALL = ["logger=none", "progress=false", "metrics.enabled=false", "param.size=32", "objective.layer=blocks.3", "steps=2"]


def _one_line(proc: subprocess.CompletedProcess[str], message: str) -> str:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("featviz:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("device", ["tpu", "meta", "cuda:x", "xla"])
def test_unknown_devices(device: str) -> None:
    with pytest.raises(ConfigError, match="device="):
        resolve_device(device)


def test_a_non_finite_image_stops_the_run(plain_lite0) -> None:
    param = PixelImage(32, sd=float("nan"))
    with pytest.raises(NonFiniteLossError, match="image became non-finite"):
        render(plain_lite0, channel("blocks.1", 0), param=param, steps=2, device="cpu")


def test_a_custom_target_must_be_a_module() -> None:
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        model_from_config({"name": "custom", "weights": "none", "net": {"_target_": "collections.OrderedDict"}})


def test_a_second_process_is_refused_and_a_stale_lock_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunLock(out):
        line = _one_line(run_cli(*SMALL, f"hydra.run.dir={out}"), "in use by another featviz process")
        assert str(os.getpid()) in line
    assert not (out / "result.json").exists()  # nothing written over the holder's folder
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (out / LOCK_NAME).write_text(f"{os.uname().nodename} {dead}")
    proc = run_cli(*SMALL, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_a_refused_rerun_writes_nothing_into_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(*SMALL, f"hydra.run.dir={out}").returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _one_line(run_cli(*SMALL, "objective.unit=5", f"hydra.run.dir={out}"), "another config")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # .hydra/ included


def test_a_planted_log_symlink_is_refused(tmp_path: Path) -> None:
    out, outside = tmp_path / "run", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("keep")
    (out / "main.log").symlink_to(outside)
    _one_line(run_cli(*SMALL, f"hydra.run.dir={out}"), "symbolic link")
    assert outside.read_text() == "keep" and not (out / "result.json").exists()


def test_ctrl_c_checkpoints_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Cheap steps (a 48 px network input) so the resume is short on any machine; the signal is
    # sent on an event (the second metrics line), not after a time, so it lands mid-run however
    # fast or slow the machine is (400 steps take over a second even idle; the poll is 20 ms).
    args = [*SMALL[:-1], "steps=400", "model.input_size=48", "checkpoint_every=0", f"hydra.run.dir={out}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "featviz", *args], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    while proc.poll() is None and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("featviz:")]
    assert len(lines) == 1 and lines[0].startswith("featviz: interrupted:") and f"hydra.run.dir={out}" in lines[0], stderr[-3000:]
    assert "Traceback" not in stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "interrupted" and (out / "checkpoint.pt").is_file()
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 400
    resumed = run_cli(*args, timeout=HANG_S)  # the command the line names
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "result.json").read_text())["status"] == "completed"


def test_an_unwritable_checkpoint_is_one_clear_error(plain_lite0, tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.mkdir()  # the write fails the way a full or read-only disk does
    with pytest.raises(OutputError, match="cannot write the checkpoint"):
        render(plain_lite0, channel("blocks.1", 0), param=PixelImage(32), steps=3, device="cpu", callbacks=[Checkpointer(target, every=1)])


def test_unreachable_wandb_server_falls_back_to_offline(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9", HYDRA_FULL_ERROR="0")  # nothing listens there
    args = [a for a in SMALL if a != "logger=none"]
    proc = subprocess.run([sys.executable, "-m", "featviz", *args, "logger.mode=online", f"hydra.run.dir={out}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum("W&B server unreachable" in line for line in (proc.stdout + proc.stderr).splitlines()) == 1
    assert list((out / "wandb").glob("offline-run-*")), "the offline files to sync later"
    # How long it waits (ONLINE_TIMEOUT_S, not W&B's own ~90 s of retries) is a setting, not
    # a wall-clock bound here: that would fail on a busy machine for reasons other than the behaviour.


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_a_job_crashing_in_native_code_fails_alone(tmp_path: Path, launcher: str) -> None:
    """A SIGSEGV in one job: that job is failed in result.json and summary.json, the next one runs."""
    sweep = tmp_path / "sweep"
    net = "{_target_:crashing_net.SegfaultAfter,calls:%d}"
    crash = ["model=custom", f"model.net={net % 1},{net % 1000}"]
    unit = ["objective=channel", "objective.layer=conv", "objective.unit=0", "steps=3", "snapshots=[0,3]"]
    chosen = [] if launcher == "basic" else [f"launcher={launcher}"]
    env = {"PYTHONPATH": str(Path(__file__).parent / "fixtures")}
    proc = run_cli("-m", *chosen, *crash, *unit, *SMALL[:4], f"hydra.sweep.dir={sweep}", env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep ran to its end and says a job failed
    assert "died of SIGSEGV" in proc.stderr and "Traceback" not in proc.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    by_job = {int(j["job"]): j for j in summary["jobs"]}
    assert by_job[0]["status"] == "failed" and "SIGSEGV" in by_job[0]["error"]
    assert by_job[1]["status"] == "completed"
    crashed = json.loads((sweep / "0" / "result.json").read_text())
    assert crashed["status"] == "failed" and f"model.net={net % 1}" in crashed["overrides"]


def test_a_refused_sweep_rerun_writes_nothing_into_the_old_folders(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    assert run_cli("-m", *SMALL, "objective.unit=1,2", f"hydra.sweep.dir={sweep}").returncode == 0
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    line = _one_line(run_cli("-m", *SMALL, "objective.unit=1,3", f"hydra.sweep.dir={sweep}"), "another config")
    assert "objective.unit: 2 -> 3" in line
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before  # every job's .hydra/ too
    again = run_cli("-m", *SMALL, "objective.unit=1,2", f"hydra.sweep.dir={sweep}")
    assert again.returncode == 0 and again.stderr.count("already holds this run") + again.stdout.count("already holds this run") == 2
