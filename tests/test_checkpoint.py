"""Checkpoints and resume: a run stopped at any point finishes with the same bytes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from featviz.errors import CheckpointError, Preempted
from featviz.checkpoint import Checkpointer, find_resume_point
from featviz.render import load_state as load
from featviz.images import save_json
from featviz.objectives.units import Channel
from featviz.writer import RunWriter
from featviz.params.fourier import FFTImage
from featviz.callbacks import Callback
from featviz.render import render
from featviz.transforms import build_transforms

STEPS = 12


class _CrashAt(Callback):
    """Stands in for a crash of the process at a given step (before the checkpointer sees it)."""

    def __init__(self, step):
        self.step = step

    def on_after_update(self, ctx, step):
        if step == self.step:
            raise RuntimeError("simulated crash")


class _SignalAt(Callback):
    """Sends a real signal to this process after a given update, as Slurm or `kill` would."""

    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def on_after_update(self, ctx, step):
        if step == self.step:
            os.kill(os.getpid(), self.signum)


def _render(model, path, callbacks=(), resume_from=None, every=4, snapshots=()):
    g = torch.Generator().manual_seed(0)
    return render(
        model, Channel("blocks.2", 5), param=FFTImage(32, generator=g), transforms=build_transforms(jitter=2, rotate=5, resize=48),
        steps=STEPS, device="cpu", generator=g, snapshots=snapshots, callbacks=[*callbacks, Checkpointer(path, every=every)],
        resume_from=resume_from,
    )


@pytest.fixture(scope="module")
def reference(lite0, tmp_path_factory):
    return _render(lite0, tmp_path_factory.mktemp("ref") / "checkpoint.pt")


def _same(a, b):
    assert torch.equal(a.images, b.images)
    assert a.history == b.history
    assert a.final["objective_max"] == b.final["objective_max"]


def test_crash_then_resume_matches_uninterrupted(lite0, reference, tmp_path):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _render(lite0, path, callbacks=[_CrashAt(7)])
    assert load(path)["step"] == 4  # the last periodic checkpoint; steps 5..7 are lost and redone
    resumed = _render(lite0, path, resume_from=path)
    _same(resumed, reference)
    assert not path.exists()  # a completed run needs no checkpoint


def test_signal_saves_at_the_next_step_and_stops(lite0, reference, tmp_path):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted, match="SIGUSR1 at step 5/12") as info:
        _render(lite0, path, callbacks=[_SignalAt(5, signal.SIGUSR1)], every=0)
    assert info.value.exit_code == 128 + signal.SIGUSR1
    assert load(path)["step"] == 5
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handlers are put back
    _same(_render(lite0, path, resume_from=path, every=0), reference)


def test_a_previous_python_handler_decides_what_the_signal_does(lite0, reference, tmp_path):
    """Like submitit: its SIGTERM handler only logs (the run goes on), its USR2 handler requeues and exits."""
    path = tmp_path / "checkpoint.pt"
    seen = []

    def carry_on(signum, frame):
        seen.append(load(path)["step"])  # the state is on disk before the old handler runs

    def requeue(signum, frame):
        sys.exit(3)

    old = signal.signal(signal.SIGUSR2, carry_on)
    try:
        _same(_render(lite0, path, callbacks=[_SignalAt(5, signal.SIGUSR2)], every=0), reference)
        assert seen == [5]
        assert signal.getsignal(signal.SIGUSR2) is carry_on
        signal.signal(signal.SIGUSR2, requeue)
        with pytest.raises(Preempted) as info:
            _render(lite0, path, callbacks=[_SignalAt(3, signal.SIGUSR2)], every=0)
        assert info.value.exit_code == 3 and load(path)["step"] == 3
    finally:
        signal.signal(signal.SIGUSR2, old)


class _SignalAtLastRecord(Callback):
    def __init__(self, signum):
        self.signum = signum

    def on_step(self, ctx, record):
        if record.step == ctx.steps:
            os.kill(os.getpid(), self.signum)


def test_a_signal_after_the_last_update_lets_the_run_complete_first(lite0, reference, tmp_path):
    path, seen = tmp_path / "checkpoint.pt", []
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        _same(_render(lite0, path, callbacks=[_SignalAtLastRecord(signal.SIGUSR2)]), reference)
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert seen == [signal.SIGUSR2] and not path.exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_a_checkpoint_runs_no_code(tmp_path):
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "pwned"
    torch.save({"format": 1, "step": 3, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="delete it"):
        load(path)
    assert not marker.exists()


def test_a_run_folder_belongs_to_one_config(lite0, tmp_path):
    config = {"seed": 0, "steps": 12, "optimizer": {"lr": 0.05}, "logger": {"kind": "none"}}
    assert find_resume_point(tmp_path, config).state is None
    ckpt = Checkpointer(tmp_path / "checkpoint.pt", every=4, meta={"config": config})
    with pytest.raises(RuntimeError):
        g = torch.Generator().manual_seed(0)
        render(lite0, Channel("blocks.2", 5), param=FFTImage(32, generator=g), transforms=build_transforms(resize=48),
               steps=12, device="cpu", generator=g, callbacks=[_CrashAt(6), ckpt])
    watched_differently = {**config, "logger": {"kind": "wandb"}}
    assert find_resume_point(tmp_path, watched_differently).step == 4
    with pytest.raises(CheckpointError, match=r"optimizer\.lr: 0\.05 -> 0\.1"):
        find_resume_point(tmp_path, {**config, "optimizer": {"lr": 0.1}})
    save_json({"status": "completed", "final": {"objective": 1.5}, "config": config}, tmp_path / "result.json")
    assert find_resume_point(tmp_path, config).completed["final"] == {"objective": 1.5}
    with pytest.raises(CheckpointError, match="completed run of another config"):
        find_resume_point(tmp_path, {**config, "seed": 1})


def test_wandb_run_resumes_with_the_same_id(lite0, tmp_path, monkeypatch):
    from featviz.app.tracking.wandb_logger import RUN_ID_FILE, WandbLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = {"kind": "wandb", "mode": "offline", "project": "featviz-tests", "log_images": False}
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError):
        _render(lite0, path, callbacks=[WandbLogger(cfg, {}, tmp_path), _CrashAt(6)])
    run_id = (tmp_path / RUN_ID_FILE).read_text()
    _render(lite0, path, callbacks=[WandbLogger(cfg, {}, tmp_path)], resume_from=path)
    runs = sorted(p.name for p in (tmp_path / "wandb").glob("offline-run-*"))
    # offline-run-<time>-<id>[-<n>]: wandb appends -1 when both runs start in the same second.
    assert len(runs) == 2 and all(name.split("-")[3] == run_id for name in runs), runs


def test_run_files_continue_where_the_checkpoint_left_off(lite0, tmp_path):
    """A hard kill (SIGKILL, OOM killer) leaves metrics lines past the last checkpoint: they are redone, not doubled."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    _render(lite0, ref / "checkpoint.pt", callbacks=[RunWriter(ref)], snapshots=[0, 6, 12])
    with pytest.raises(RuntimeError):
        _render(lite0, run / "checkpoint.pt", callbacks=[RunWriter(run), _CrashAt(7)], snapshots=[0, 6, 12])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 7 and load(run / "checkpoint.pt")["step"] == 4
    _render(lite0, run / "checkpoint.pt", callbacks=[RunWriter(run)], snapshots=[0, 6, 12], resume_from=run / "checkpoint.pt")
    for name in ["metrics.jsonl", "final.png", "snapshots/step_6.png", "snapshots/step_12.png"]:
        assert (ref / name).read_bytes() == (run / name).read_bytes(), name


# --- the command line, killed for real ------------------------------------------------------

HANG_S = 3600  # a guard against a hung child only: these tests wait for events (a metrics line), not for time
CLI = ["logger=none", "progress=false", "++metrics.enabled=false", "param.size=32", "objective.layer=blocks.3",
       "transforms.jitter=2", "transforms.jitter_after=0", "steps=48", "snapshots=[0,10,48]", "threads=1"]


def _start(out, *extra):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen([sys.executable, "-m", "featviz", *CLI, *extra, f"hydra.run.dir={out}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(out, *extra):
    proc = _start(out, *extra)
    stdout, stderr = proc.communicate(timeout=HANG_S)
    return proc.returncode, stdout, stderr


def _kill_after(out, lines, sig, *extra):
    """Start a run, send ``sig`` once ``metrics.jsonl`` has ``lines`` lines, return (rc, stderr)."""
    proc = _start(out, *extra)
    metrics = out / "metrics.jsonl"
    while proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= lines:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=HANG_S)
    return proc.returncode, stderr


def _run_job_here(out, *extra):
    """Run a config through the app's own job function, in this process (no interpreter start-up)."""
    from hydra import compose, initialize_config_dir

    from featviz.app.job import run_job

    threads = torch.get_num_threads()
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return run_job(compose("config", overrides=[*CLI, *extra]), out)
    finally:
        torch.set_num_threads(threads)  # the config's threads=1 must not leak into other tests


@pytest.fixture
def uninterrupted(tmp_path):
    out = tmp_path / "whole"
    _run_job_here(out)
    return out


def test_sigterm_then_rerun_gives_the_same_bytes(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    rc, stderr = _kill_after(out, 5, signal.SIGTERM, "checkpoint_every=0")
    assert rc == 128 + signal.SIGTERM, stderr[-2000:]
    assert f"run the same command with hydra.run.dir={out} to resume" in stderr and "Traceback" not in stderr
    stopped = json.loads((out / "result.json").read_text())
    assert stopped["status"] == "preempted" and 5 <= stopped["steps_done"] < 48
    assert not (out / "final.png").exists()

    rc, _, stderr = _run(out)  # checkpoint_every differs: it only changes how the run is watched
    assert rc == 0, stderr
    for name in ["final.png", "metrics.jsonl", "snapshots/step_0.png", "snapshots/step_10.png", "snapshots/step_48.png"]:
        assert (uninterrupted / name).read_bytes() == (out / name).read_bytes(), name
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["resumed_from_step"] == stopped["steps_done"]
    assert not (out / "checkpoint.pt").exists()

    before = (out / "final.png").stat().st_mtime_ns
    assert _run_job_here(out)["objective"] == result["final"]["objective"]  # a finished run is not redone
    assert "already holds this run, completed" in capsys.readouterr().out
    assert (out / "final.png").stat().st_mtime_ns == before
