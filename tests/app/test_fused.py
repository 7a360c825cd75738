"""launcher=fused: a sweep's compatible jobs as packs, each job leaving the folder a solo job leaves."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, run_cli

SMALL = ["logger=none", "progress=false", "++metrics.enabled=false", "param.size=32", "objective.layer=blocks.3",
         "transforms.jitter=2", "transforms.jitter_after=0", "steps=16", "snapshots=[0,16]", "threads=1", "launcher=fused"]
SWEEP = ["regularizer.tv=0,0.5", "seed=0,1"]


def _result(job_dir):
    return json.loads((job_dir / "result.json").read_text())


def _pngs(sweep, jobs):
    return [(sweep / str(j) / "final.png").read_bytes() for j in jobs]


@pytest.fixture(scope="module")
def fused_sweep(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("fused")
    proc = run_cli("-m", *SMALL, *SWEEP, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep, proc


def test_a_fused_sweep_is_one_pack_whose_jobs_leave_solo_folders(fused_sweep):
    sweep, proc = fused_sweep
    assert "4 job(s) in 1 pack(s)" in proc.stderr + proc.stdout
    for j in range(4):
        job = sweep / str(j)
        result = _result(job)
        assert result["status"] == "completed" and result["pack"] == {"id": 0, "size": 4}
        assert {p.name for p in job.iterdir()} >= {".hydra", "result.json", "metrics.jsonl", "final.png", "snapshots"}
        assert (job / ".hydra" / "overrides.yaml").is_file() and not (job / "checkpoint.pt").exists()
        assert len((job / "metrics.jsonl").read_text().splitlines()) == 17
    assert json.loads((sweep / "summary.json").read_text())["counts"] == {"completed": 4}
    assert len(set(_pngs(sweep, range(4)))) == 4  # four settings, four images


def test_the_same_fused_sweep_twice_gives_the_same_bytes_and_a_rerun_skips(fused_sweep, tmp_path):
    sweep, _ = fused_sweep
    proc = run_cli("-m", *SMALL, *SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _pngs(tmp_path, range(4)) == _pngs(sweep, range(4))
    again = run_cli("-m", *SMALL, *SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert again.returncode == 0 and again.stdout.count("already holds this run, completed") == 4


def test_packed_jobs_end_near_their_solo_runs(fused_sweep, tmp_path):
    """Float reductions in a batch are not those of batch 1: near, not equal (docs/fused_sweeps.md)."""
    sweep, _ = fused_sweep
    proc = run_cli("-m", *[a for a in SMALL if a != "launcher=fused"], *SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for j in range(4):
        fused, solo = _result(sweep / str(j))["final"]["objective"], _result(tmp_path / str(j))["final"]["objective"]
        assert abs(fused - solo) <= 0.01 * abs(solo)


def test_a_bad_job_fails_alone_and_packs_follow_networks_and_max_images(tmp_path):
    """Jobs of two networks are two packs; max_images=2 cuts each network's three jobs into 2 + 1."""
    proc = run_cli("-m", *SMALL, "model.weights=imagenet,none", "objective.unit=1,2,100000", "hydra.launcher.max_images=2",
                   f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    results = [_result(tmp_path / str(j)) for j in range(6)]
    assert [r["status"] for r in results] == ["completed", "completed", "failed"] * 2
    assert "100000" in results[2]["error"]["message"]
    assert [r["pack"]["id"] for r in results] == [0, 0, 1, 2, 2, 3]
    assert [r["config"]["model"]["weights"] for r in results[::3]] == ["imagenet", "none"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"completed": 4, "failed": 2}


def _checkpoint_steps(sweep, jobs):
    steps = []
    for j in jobs:
        path = sweep / str(j) / "checkpoint.pt"
        try:
            steps.append(torch.load(path, weights_only=True)["step"])
        except Exception:  # not written yet, or being replaced
            return None
    return steps


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills the sweep's process group")
def test_a_pack_killed_mid_run_resumes_to_the_bytes_of_an_uninterrupted_pack(fused_sweep, tmp_path):
    sweep, _ = fused_sweep
    args = [sys.executable, "-m", "featviz", "-m", *SMALL, *SWEEP, "checkpoint_every=4", f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    killed_at = None
    while proc.poll() is None and killed_at is None:
        steps = _checkpoint_steps(tmp_path, range(4))
        if steps and len(set(steps)) == 1 and 4 <= steps[0] < 16:  # every job saved the same step: kill before the next save
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = steps[0]
        time.sleep(0.01)
    proc.communicate()
    assert killed_at is not None, "the sweep ended before a checkpoint could be caught"
    rerun = run_cli("-m", *SMALL, *SWEEP, "checkpoint_every=4", f"hydra.sweep.dir={tmp_path}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [_result(tmp_path / str(j))["resumed_from_step"] for j in range(4)] == [killed_at] * 4
    assert _pngs(tmp_path, range(4)) == _pngs(sweep, range(4))


def test_wandb_gives_each_packed_job_its_own_run_in_the_sweeps_group(tmp_path):
    from featviz.app.tracking.session import sweep_group
    from test_tracking import final_state, of_type, records

    proc = run_cli("-m", *[a for a in SMALL if a != "logger=none"], "logger=wandb", "seed=0,1", "steps=4", "snapshots=[4]",
                   f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = [(tmp_path / str(j) / "wandb_run_id.txt").read_text() for j in range(2)]
    assert len(set(ids)) == 2
    for j, run_id in enumerate(ids):
        (run_dir,) = (tmp_path / str(j) / "wandb").glob(f"offline-run-*-{run_id}")
        (run,) = of_type(records(run_dir), "run")
        assert run["run_group"] == sweep_group(tmp_path) and run["display_name"] == f"seed={j}"
        state = final_state(run_dir)
        assert state["summary"]["status"] == "completed" and state["summary"]["final/objective"] == _result(tmp_path / str(j))["final"]["objective"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the pack's task process through /proc")
def test_a_pack_as_a_submitit_task_is_requeued_on_usr2_and_every_job_resumes(fused_sweep, tmp_path):
    """backend=submitit_local runs the pickled array task of backend=slurm; USR2 is Slurm's preemption notice."""
    from test_sweeps import _process_writing

    sweep, _ = fused_sweep
    args = [sys.executable, "-m", "featviz", "-m", *SMALL, *SWEEP, "checkpoint_every=0", "hydra.launcher.backend=submitit_local",
            "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, "HYDRA_FULL_ERROR": "0"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, task = tmp_path / "3" / "metrics.jsonl", None
    while proc.poll() is None and task is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 4:
            task = _process_writing(metrics.resolve())
        time.sleep(0.02)
    assert task is not None, "the pack's task never started"
    os.kill(task, signal.SIGUSR2)
    _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    results = [_result(tmp_path / str(j)) for j in range(4)]
    assert all(r["status"] == "completed" and r["resumed_from_step"] >= 3 and r["pack"] == {"id": 0, "size": 4} for r in results)
    assert _pngs(tmp_path, range(4)) == _pngs(sweep, range(4))


def test_packs_are_blocks_that_hold_both_arms_and_the_report_pairs_within_them(tmp_path):
    """tv=0,1 x 6 seeds at 4 images a pack: 3 packs, each holding both tv values (two seeds' pairs),
    recorded as a blocking factor; the report pairs each seed's arms inside one pack and stars no timing row."""
    from featviz.app.cli import main as cli_main

    small = [a for a in SMALL if not a.startswith(("steps=", "snapshots=", "++metrics"))]
    proc = run_cli("-m", *small, "steps=6", "snapshots=[6]", "metrics.views=0", "metrics.eval_model=null", "hydra.launcher.max_images=4",
                   "regularizer.tv=0,1", "seed=0,1,2,3,4,5", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep of 12 jobs in 3 packs (4, 4, 4): 12 completed" in proc.stdout
    results = [_result(tmp_path / str(j)) for j in range(12)]
    by_pack: dict[int, set[tuple[str, str]]] = {}
    for r in results:
        tv, seed = (o.split("=")[1] for o in r["overrides"] if o.startswith(("regularizer.tv=", "seed=")))
        by_pack.setdefault(r["pack"]["id"], set()).add((tv, seed))
        assert r["blocking"] == {"factor": "pack", "level": r["pack"]["id"], "levels": 3, "replicates": ["seed"], "arms": 2, "arms_in_pack": 2}
    assert sorted(by_pack) == [0, 1, 2] and all({tv for tv, _ in arms} == {"0", "1"} for arms in by_pack.values())
    assert all({s for tv, s in arms if tv == "0"} == {s for tv, s in arms if tv == "1"} for arms in by_pack.values())  # a seed's arms share its pack
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["packs"] == {str(p): [str(j) for j in range(12) if results[j]["pack"]["id"] == p] for p in range(3)}
    assert cli_main(["report", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "report" / "effects_comparisons.csv").open()))
    assert rows and all(r["n"] == "6" and r["pairs_in_pack"] == "6" and "confounded" not in r["note"] for r in rows)
    timing = [r for r in rows if r["metric"] in ("wall_time_s", "steps_per_s")]
    assert timing and all(r["kind"] == "compute" and r["significant"] == "no" and "packs share a clock" in r["note"] for r in timing)
    assert any(r["metric"] == "tv" and r["significant"] == "yes" for r in rows)  # the quality effect is still found

