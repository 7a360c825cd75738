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
from featviz.rundir import RESULT_NAME, JobRecord, read_json, read_sweep

SUMMARY_NAME = "summary.json"


def _entry(job: JobRecord) -> dict[str, Any]:
    """One job's line in the summary: status, overrides, final objective, its pack (a fused sweep) and the error if any."""
    entry: dict[str, Any] = {"job": job.job, "overrides": job.overrides, "status": job.status}
    if "objective" in job.final:
        entry["objective"] = job.final["objective"]
    pack = (read_json(job.folder / RESULT_NAME) or {}).get("pack") or {}
    if "id" in pack:
        entry["pack"] = pack["id"]
    if job.error:
        entry["error"] = job.error
    return entry


def _top_level(jobs: list[JobRecord]) -> list[JobRecord]:
    """The sweep's own jobs: a folder inside another job's folder (a search trial's ``unit_<class>/``) is part of that job."""
    names = {j.job for j in jobs}
    return [j for j in jobs if j.job != "." and not any("/".join(j.job.split("/")[:i]) in names for i in range(1, j.job.count("/") + 1))]


def packs(jobs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each pack's jobs (``{pack id: [job, ...]}``, ids ascending): the sweep's blocking factor; empty when no job was packed."""
    found: dict[int, list[str]] = {}
    for job in jobs:
        if "pack" in job:
            found.setdefault(int(job["pack"]), []).append(job["job"])
    return {str(k): found[k] for k in sorted(found)}


def summarize(sweep_dir: str | Path) -> dict[str, Any]:
    """Every job folder under ``sweep_dir`` (one with ``.hydra/`` or ``result.json``, not inside another job's), in job order."""
    jobs = [_entry(job) for job in _top_level(read_sweep(sweep_dir))]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return {
        "sweep_dir": str(sweep_dir),
        "total": len(jobs),
        "counts": counts,
        "packs": packs(jobs),
        "not_completed": [j for j in jobs if j["status"] != "completed"],
        "jobs": jobs,
    }


def headline(summary: dict[str, Any]) -> str:
    """``sweep of 24 jobs in 2 packs (12, 12): 24 completed``: the line the sweep ends with (docs quote it)."""
    total, sizes = summary["total"], [len(v) for v in summary["packs"].values()]
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
    in_packs = f" in {len(sizes)} pack{'s' * (len(sizes) != 1)} ({', '.join(map(str, sizes))})" if sizes else ""
    return f"sweep of {total} job{'s' * (total != 1)}{in_packs}: {counts or 'none ran'}"


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
        print(f"featviz: {headline(summary)}; summary in {path}")
        for job in summary["not_completed"]:
            which = " ".join(_distinct(job["overrides"], summary["jobs"]))
            print(f"featviz:   job {job['job']} {job['status']} [{which}]: {job.get('error', '')}", file=sys.stderr)
        if summary["not_completed"] and self.fail_on_error:
            sys.exit(1)
