"""The supervisor contract: a job's child process dies with its job process, and a joblib
sweep passes SIGTERM on to its jobs, says so, and each job saves its state and stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO
from featviz.rundir import process_start

FIXTURES = Path(__file__).parent / "fixtures"
HANG_S = 3600  # a guard against a hung process only: the tests wait for events, not for a time
SMALL = ["logger=none", "progress=false", "metrics.enabled=false", "param.size=32", "objective.layer=blocks.3"]


def _wait_for(condition, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until it holds (or ``proc`` ends first, or the hang guard passes)."""
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert proc is None or proc.poll() is None, "the process ended before the event"
        assert time.monotonic() < deadline, "hung"
        time.sleep(0.05)


def test_an_isolated_child_dies_with_its_killed_job_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(REPO)])}
    job = subprocess.Popen([sys.executable, str(FIXTURES / "orphan_job.py"), str(pid_file), str(tmp_path / "run")], env=env, cwd=REPO)
    _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip().isdigit(), job)
    child = int(pid_file.read_text())
    assert process_start(child) is not None
    job.kill()  # SIGKILL: no handler of the job process runs
    job.wait()
    _wait_for(lambda: process_start(child) is None)  # gone (or a zombie), not rendering on


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_sigterm_to_a_joblib_sweep_reaches_its_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "launcher=joblib", "hydra.launcher.n_jobs=2", *SMALL, "steps=100000", "model.input_size=48", "checkpoint_every=0",
            "objective.unit=1,2", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "featviz", *args], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: all(_lines(sweep / job / "metrics.jsonl") >= 2 for job in ("0", "1")), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    said = [line for line in stderr.splitlines() if line.startswith("featviz: SIGTERM: passed on to 2 job process(es)")]
    assert len(said) == 1, stderr[-3000:]
    for job in ("0", "1"):
        result = json.loads((sweep / job / "result.json").read_text())
        assert result["status"] == "preempted", (job, result.get("error"))
        assert (sweep / job / "checkpoint.pt").is_file()


def test_a_handed_back_signal_whose_handler_returns_is_the_signals_own_stop(tmp_path):
    """submitit only logs a SIGTERM (scancel, or the kill before a requeue): nothing was requeued, so
    the stop says "rerun to resume" with 128 + the signal, not the requeue of a handler that exited."""
    import signal as signals

    from featviz.app.isolation import _run_handed_back
    from featviz.errors import Preempted

    stop = Preempted("SIGTERM", 5, 10, tmp_path / "checkpoint.pt", 75, handed_over=True)
    logged = _run_handed_back(stop, lambda signum, frame: None)
    assert (logged.exit_code, logged.handed_over) == (128 + signals.SIGTERM, False)

    def requeue(signum, frame):
        raise SystemExit(3)

    assert (_run_handed_back(stop, requeue).exit_code, _run_handed_back(stop, requeue).handed_over) == (3, True)
