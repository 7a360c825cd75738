"""Sweeps on every launcher: failures stay in their job, preempted jobs resume, bytes agree."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from featviz.app.config import cpu_share
from featviz.images import save_json
from featviz.app.sweep_summary import summarize

# One thread count for every launcher: the image bytes depend on it (see docs/scaling_and_reliability.md).
THREADS = cpu_share(2)
SMALL = ["logger=none", "progress=false", "++metrics.enabled=false", "param.size=32", "objective.layer=blocks.3",
         "transforms.jitter=2", "transforms.jitter_after=0", "steps=24", "snapshots=[0,24]"]
OPTIMIZERS = "optimizer._target_=torch.optim.Adam,torch.optim.LBFGS,torch.optim.Nope"


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """Three jobs in this process: one completes, one raises a plain TypeError mid-loop, one a config error."""
    sweep = tmp_path_factory.mktemp("basic")
    proc = run_cli("-m", *SMALL, f"threads={THREADS}", OPTIMIZERS, f"hydra.sweep.dir={sweep}")
    return sweep, proc


def _result(job_dir):
    return json.loads((job_dir / "result.json").read_text())


def test_failed_jobs_are_recorded_and_the_sweep_goes_on(basic_sweep):
    sweep, proc = basic_sweep
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep as a whole did not succeed
    assert (sweep / "0" / "final.png").is_file()
    lbfgs, missing = _result(sweep / "1"), _result(sweep / "2")
    assert lbfgs["status"] == "failed" and lbfgs["error"]["type"] == "ConfigError" and "closure" in lbfgs["error"]["message"]
    assert missing["status"] == "failed" and missing["error"]["type"] == "ConfigError"
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"] == {"completed": 1, "failed": 2}
    assert [j["job"] for j in summary["not_completed"]] == ["1", "2"]
    assert "closure" in summary["not_completed"][0]["error"]
    failed_lines = [line for line in proc.stderr.splitlines() if line.startswith("featviz:   job ")]
    assert len(failed_lines) == 2 and "optimizer._target_=torch.optim.LBFGS" in failed_lines[0]
    assert "param.size=32" not in failed_lines[0]  # only what tells the jobs apart


def test_joblib_divides_the_cores_and_gives_the_same_bytes(basic_sweep, tmp_path):
    sweep, _ = basic_sweep
    proc = run_cli("-m", *SMALL, "launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [_result(tmp_path / j)["torch_threads"] for j in "01"] == [THREADS, THREADS]
    assert (tmp_path / "0" / "final.png").read_bytes() == (sweep / "0" / "final.png").read_bytes()
    assert (tmp_path / "1" / "final.png").read_bytes() != (sweep / "0" / "final.png").read_bytes()


def test_isolated_jobs_share_the_servers_model_and_give_the_in_process_bytes(tmp_path):
    """Each job of a sweep forks from a server that built the network once (featviz.app.shared_model)."""
    sweep, single = tmp_path / "sweep", tmp_path / "single"
    proc = run_cli("-m", *SMALL, f"threads={THREADS}", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [_result(sweep / j)["shared_model"] for j in "01"] == [True, True]
    proc = run_cli(*SMALL, f"threads={THREADS}", "seed=0", "isolate=false", f"hydra.run.dir={single}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _result(single)["shared_model"] is False
    assert (sweep / "0" / "final.png").read_bytes() == (single / "final.png").read_bytes()


def _process_writing(path):
    """The process holding ``path`` open (Linux /proc): the job's task, whatever launched it."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:  # processes come and go, some are not ours to read
            continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the submitit task process through /proc")
def test_submitit_requeues_a_preempted_job_which_resumes(basic_sweep, tmp_path):
    """USR2 is what Slurm sends before preempting or timing out a submitit job; submitit requeues it."""
    sweep, _ = basic_sweep
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    cmd = [sys.executable, "-m", "featviz", "-m", *SMALL, "launcher=submitit_local", f"hydra.launcher.cpus_per_task={THREADS}",
           "checkpoint_every=0", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline, task = tmp_path / "0" / "metrics.jsonl", time.monotonic() + 300, None
    while time.monotonic() < deadline and proc.poll() is None and task is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 6:
            task = _process_writing(metrics.resolve())
        time.sleep(0.02)
    assert task is not None, "the submitit task never started"
    os.kill(task, signal.SIGUSR2)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    job0 = _result(tmp_path / "0")
    assert job0["status"] == "completed" and job0["resumed_from_step"] >= 6
    assert (tmp_path / "0" / "final.png").read_bytes() == (sweep / "0" / "final.png").read_bytes()
    assert json.loads((tmp_path / "summary.json").read_text())["counts"] == {"completed": 1}


def test_slurm_launcher_config_is_complete():
    proc = run_cli("launcher=slurm", "--cfg", "hydra", "--package", "hydra.launcher")
    assert proc.returncode == 0, proc.stderr
    assert "SlurmLauncher" in proc.stdout and "export WANDB_MODE=offline" in proc.stdout
    assert "array_parallelism: 64" in proc.stdout and "max_num_timeout: 3" in proc.stdout


def test_summary_flags_jobs_that_never_reported(tmp_path):
    for job, overrides in [("0", ["seed=0"]), ("1", ["seed=1"]), ("2", ["seed=2"])]:
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    save_json({"status": "completed", "overrides": ["seed=0"], "final": {"objective": 2.0}}, tmp_path / "0" / "result.json")
    save_json({"status": "completed", "overrides": ["seed=7"], "final": {"objective": 3.0}}, tmp_path / "2" / "result.json")
    summary = summarize(tmp_path)
    assert [(j["job"], j["status"]) for j in summary["jobs"]] == [("0", "completed"), ("1", "missing"), ("2", "stale")]
    assert summary["jobs"][0]["objective"] == 2.0
