"""After a Hydra multirun: which jobs finished, which did not, and an exit code that says so.

Jobs of a sweep fail on their own (the app records any exception in the job's
``result.json`` and lets the sweep go on), so at the end someone has to say which ones.
:class:`SweepSummary` reads every job folder of the sweep and writes
``<sweep dir>/summary.json``, prints the jobs that did not complete, and exits non-zero if
there are any, so a script or CI step sees that the sweep was not a full success.

The summary is built from the files the jobs left, not from Hydra's in-memory returns, so
it is the same for every launcher (joblib and submitit run jobs in other processes) and
it also catches jobs that died before writing anything (status ``missing``).

Registered first under ``hydra.callbacks`` in ``conf/config.yaml``: Hydra calls
``on_multirun_end`` hooks in reverse order, so this one runs after the others (the W&B
sweep table) and its ``sys.exit`` skips nothing. ``fail_on_error=false`` keeps exit code 0.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from featviz.images import save_json
from featviz.rundir import JobRecord, read_sweep

SUMMARY_NAME = "summary.json"


def _entry(job: JobRecord) -> dict[str, Any]:
    """One job's line in the summary: status, overrides, final objective and the error if any."""
    entry: dict[str, Any] = {"job": job.job, "overrides": job.overrides, "status": job.status}
    if "objective" in job.final:
        entry["objective"] = job.final["objective"]
    if job.error:
        entry["error"] = job.error
    return entry


def summarize(sweep_dir: str | Path) -> dict[str, Any]:
    """Every job folder under ``sweep_dir`` (one with ``.hydra/`` or ``result.json``), in job order."""
    jobs = [_entry(job) for job in read_sweep(sweep_dir) if job.job != "."]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return {
        "sweep_dir": str(sweep_dir),
        "total": len(jobs),
        "counts": counts,
        "not_completed": [j for j in jobs if j["status"] != "completed"],
        "jobs": jobs,
    }


def _distinct(overrides: list[str], jobs: list[dict[str, Any]]) -> list[str]:
    """The overrides that tell this job apart from the others (those all jobs share are noise here)."""
    shared = set.intersection(*(set(j["overrides"]) for j in jobs)) if len(jobs) > 1 else set()
    return [o for o in overrides if o not in shared]


class SweepSummary(Callback):
    """Hydra callback: write ``summary.json`` at the end of a multirun, fail if a job did."""

    def __init__(self, fail_on_error: bool = True) -> None:
        self.fail_on_error = fail_on_error

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        summary = summarize(sweep_dir)
        path = save_json(summary, sweep_dir / SUMMARY_NAME)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
        print(f"featviz: sweep of {summary['total']} job{'s' * (summary['total'] != 1)}: {counts or 'none ran'}; summary in {path}")
        for job in summary["not_completed"]:
            which = " ".join(_distinct(job["overrides"], summary["jobs"]))
            print(f"featviz:   job {job['job']} {job['status']} [{which}]: {job.get('error', '')}", file=sys.stderr)
        if summary["not_completed"] and self.fail_on_error:
            sys.exit(1)
