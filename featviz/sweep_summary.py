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

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from featviz.images import save_json


SUMMARY_NAME = "summary.json"
SKIP_PARTS = {"wandb", ".submitit"}  # folders inside a sweep that hold no jobs


def _natural_key(job: str) -> list[tuple[int, int, str]]:
    """Job "2" before "10"; non-numeric parts after numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in job.split("/")]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _job_status(job_dir: Path) -> dict[str, Any]:
    """One job's entry: status, overrides, final objective and the error if any."""
    hydra_overrides = job_dir / ".hydra" / "overrides.yaml"
    launched = [str(o) for o in yaml.safe_load(hydra_overrides.read_text(encoding="utf-8")) or []] if hydra_overrides.is_file() else None
    result = _read_json(job_dir / "result.json")
    entry: dict[str, Any] = {"overrides": launched if launched is not None else list((result or {}).get("overrides") or [])}
    if result is None:
        entry["status"] = "missing"
        entry["error"] = "no readable result.json: the job died before it could write one (killed, or its folder is not writable)"
        return entry
    entry["status"] = str(result.get("status", "unknown"))
    if launched is not None and list(result.get("overrides") or []) != launched:
        entry["status"] = "stale"
        entry["error"] = f"result.json was written by another job ({result.get('overrides')}); this job stopped before writing its own"
        return entry
    final = result.get("final") or {}
    if "objective" in final:
        entry["objective"] = final["objective"]
    error = result.get("error") or {}
    if error:
        first_line = str(error.get("message", "")).strip().splitlines()[:1]
        entry["error"] = f"{error.get('type', 'Error')}: {first_line[0] if first_line else ''}"
    return entry


def summarize(sweep_dir: str | Path) -> dict[str, Any]:
    """Every job folder under ``sweep_dir`` (one with ``.hydra/`` or ``result.json``), in job order."""
    root = Path(sweep_dir)
    folders = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")} | {p.parent for p in root.rglob("result.json")}
    jobs = []
    for folder in folders:
        rel = folder.relative_to(root)
        if folder == root or SKIP_PARTS & set(rel.parts):
            continue
        jobs.append({"job": rel.as_posix(), **_job_status(folder)})
    jobs.sort(key=lambda j: _natural_key(j["job"]))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return {
        "sweep_dir": str(root),
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
        print(f"featviz: sweep of {summary['total']} jobs: {counts or 'none ran'}; summary in {path}")
        for job in summary["not_completed"]:
            which = " ".join(_distinct(job["overrides"], summary["jobs"]))
            print(f"featviz:   job {job['job']} {job['status']} [{which}]: {job.get('error', '')}", file=sys.stderr)
        if summary["not_completed"] and self.fail_on_error:
            sys.exit(1)
