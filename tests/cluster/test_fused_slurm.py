"""launcher=fused on a real Slurm scheduler: one array task per pack, a requeued pack resumes every job,
a cancelled pack's jobs are recorded failed and the sweep is still summarized."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_slurm import LocalSlurm
from sweeps import SMALL, Multirun

pytestmark = pytest.mark.cluster

#: Packs of at most 3 images as array tasks of one CPU each (one torch thread: the bytes of a local threads=1 run).
FUSED = ["launcher=fused", "hydra.launcher.backend=slurm", "hydra.launcher.max_images=3", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10", "threads=1", "logger=none"]
STEPS, STOP_AT = 120, 10


def test_packs_are_array_tasks_and_a_requeued_pack_resumes_every_job(slurm_cluster: LocalSlurm, tmp_path: Path) -> None:
    local = tmp_path / "local"
    reference = Multirun(slurm_cluster, local, *[a for a in FUSED if "backend" not in a and "hydra.launcher.cpus" not in a
                                                 and "mem_gb" not in a and "timeout" not in a], *SMALL,
                         f"steps={STEPS}", f"snapshots=[{STEPS}]", "checkpoint_every=0", "seed=0,1,2,3,4,5", "isolate=false")
    assert reference.wait() == 0, reference.stderr[-3000:]
    sweep = Multirun(slurm_cluster, tmp_path / "sweep", *FUSED, *SMALL, f"steps={STEPS}", f"snapshots=[{STEPS}]", "checkpoint_every=0",
                     "seed=0,1,2,3,4,5")
    sweep.wait_step(4, STOP_AT)
    slurm_cluster.run("scontrol", "requeue", sweep.job_id(1))  # array task 1 = pack 1: jobs 3, 4, 5
    assert sweep.wait() == 0, sweep.stderr[-3000:]
    assert sweep.summary()["counts"] == {"completed": 6}
    results = [sweep.result(n) for n in range(6)]
    assert [r["pack"] for r in results] == [{"id": 0, "size": 3}] * 3 + [{"id": 1, "size": 3}] * 3
    assert all(r.get("resumed_from_step") is None for r in results[:3])
    assert all(STOP_AT <= r["resumed_from_step"] < STEPS for r in results[3:]), [r.get("resumed_from_step") for r in results]
    for n in range(6):
        assert (sweep.sweep / str(n) / "final.png").read_bytes() == (local / str(n) / "final.png").read_bytes(), n


def test_a_cancelled_pack_fails_its_jobs_and_the_sweep_is_summarized(slurm_cluster: LocalSlurm, tmp_path: Path) -> None:
    # steps is the swept arm (400 or 6) and no replicate key is swept: the balanced plan deals the four jobs
    # round-robin into two packs of two, pack 0 = jobs 0 and 2 (400 steps), pack 1 = jobs 1 (400) and 3 (6)
    sweep = Multirun(slurm_cluster, tmp_path / "sweep", *FUSED, *SMALL, "checkpoint_every=0", "steps=400,400,400,6")
    sweep.wait_step(0, STOP_AT)
    slurm_cluster.run("scancel", sweep.job_id(0))  # array task 0 = pack 0
    assert sweep.wait() == 1
    summary = sweep.summary()
    assert summary["counts"] == {"completed": 2, "failed": 2}
    for n in (0, 2):
        result = sweep.result(n)
        assert result["status"] == "failed" and "pack 0 (2 jobs)" in result["error"]["message"], result.get("error")
    assert [sweep.result(n)["status"] for n in (1, 3)] == ["completed", "completed"]
