"""A fused sweep's packs as the tasks of one Slurm job array (``hydra.launcher.backend=slurm``).

One array task per pack, so a 48-job sweep is a few GPU jobs, not 48. Each task renders its
pack in-process (:func:`featviz.app.pack.run_pack`); preemption and the time limit work as
for ``launcher=slurm``: Slurm sends USR2, every job of the pack saves its checkpoint
(:class:`featviz.checkpoint.StopLatch`), submitit requeues the task and the requeued task
resumes every job. ``backend=submitit_local`` runs the same pickled tasks as local processes
(submitit's emulation), for a machine without Slurm.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import submitit

from featviz.app.pack import JobSpec, Pack, crashed, run_pack_lines
from featviz.errors import Preempted

#: The launcher's keys that submitit takes under their own name; the others get the cluster's prefix.
SHARED_KEYS = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name", "stderr_to_stdout"}
#: The launcher's keys that are featviz's own, not submitit's.
OWN_KEYS = {"backend", "max_images", "submitit_folder", "max_num_timeout"}


class PackTask(submitit.helpers.Checkpointable):
    """What an array task runs: one pack. Requeued as it is (its jobs resume from their checkpoints)."""

    def __call__(self, specs: list[JobSpec], info: dict[str, Any]) -> list[dict[str, Any] | str]:
        try:
            return run_pack_lines(specs, info)
        except Preempted as exc:  # submitit's handler has requeued the task: end as it chose
            print(f"featviz: preempted: pack {info['id']}: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)


def executor_for(params: Mapping[str, Any], sweep_dir: Path) -> submitit.AutoExecutor:
    """A submitit executor for the launcher's settings (``slurm``, or ``local`` for submitit_local)."""
    cluster = "local" if params.get("backend") == "submitit_local" else "slurm"
    folder = params.get("submitit_folder") or str(sweep_dir / ".submitit" / "%j")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **({"slurm_max_num_timeout": params["max_num_timeout"]} if cluster == "slurm" else {}))
    settings = {k: v for k, v in params.items() if k not in OWN_KEYS and v is not None}
    if cluster == "local":
        settings = {k: v for k, v in settings.items() if k in SHARED_KEYS}
    executor.update_parameters(**{k if k in SHARED_KEYS else f"{cluster}_{k}": v for k, v in settings.items()})
    return executor


def run_on_slurm(packs: Sequence[Pack], params: Mapping[str, Any], sweep_dir: Path) -> list[list[dict[str, Any] | str]]:
    """Submit every pack as one task of an array, wait for them all; each pack's job outcomes."""
    executor = executor_for(params, sweep_dir)
    jobs = executor.map_array(PackTask(), [p.specs for p in packs], [p.info for p in packs])
    outcomes: list[list[dict[str, Any] | str]] = []
    for pack, job in zip(packs, jobs):
        try:
            outcomes.append(job.result())
        except Exception as exc:  # noqa: BLE001 - the task died (scancel, node failure, OOM): its jobs failed
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            outcomes.append(crashed(pack, f"its array task {job.job_id} ended without a result ({first[:300]})"))
    return outcomes
