"""After a Hydra multirun, one extra W&B run that puts the whole sweep in one table.

Comparing a regularization spectrum means looking at all final images side by side; a
W&B table with one row per job (overrides, final image, final metrics) does that in the
dashboard. It is built from the ``result.json`` and ``final.png`` each job left in the
sweep folder, not from in-memory state, so it works for any launcher (jobs may have run
in other processes) and includes jobs that failed, marked as such.

Registered in ``conf/config.yaml`` under ``hydra.callbacks``; it acts only when
``logger.kind`` is ``wandb`` and ``logger.sweep_table`` is true. Like the per-job logger it
never fails the command: the sweep's own results are already on disk.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from featviz.tracking.session import run_tags, start_run, sweep_group, sync_hint

log = logging.getLogger("featviz")

SUMMARY_NAME = "sweep-summary"
TABLE_KEY = "sweep/jobs"


@dataclass
class JobResult:
    """What one job of the sweep left on disk."""

    job: str  # the job folder relative to the sweep folder, e.g. "3"
    status: str
    overrides: list[str]
    final: dict[str, Any]
    error: str
    final_image: Path | None
    wandb_run: str | None  # id of the job's own W&B run, to find it in the dashboard


def _natural_key(parts: tuple[str, ...]) -> list[tuple[int, int, str]]:
    """Job folders "2" before "10"; non-numeric names after numbers, alphabetically."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _wandb_run_id(job_dir: Path) -> str | None:
    """The id of the newest W&B run in ``job_dir/wandb/`` (folder ``[offline-]run-<time>-<id>``)."""
    runs = sorted(p.name for p in (job_dir / "wandb").glob("*run-*") if p.is_dir())
    return runs[-1].rsplit("-", 1)[-1] if runs else None


def collect_jobs(sweep_dir: Path) -> list[JobResult]:
    """Every job under ``sweep_dir`` that wrote a ``result.json``, in job order."""
    found = [p for p in sweep_dir.rglob("result.json") if "wandb" not in p.relative_to(sweep_dir).parts]
    found.sort(key=lambda p: _natural_key(p.parent.relative_to(sweep_dir).parts))
    jobs = []
    for path in found:
        data = json.loads(path.read_text(encoding="utf-8"))
        error = data.get("error") or {}
        image = path.parent / "final.png"
        jobs.append(
            JobResult(
                job=str(path.parent.relative_to(sweep_dir)),
                status=str(data.get("status", "unknown")),
                overrides=[str(o) for o in data.get("overrides") or []],
                final=dict(data.get("final") or {}),
                error=f"{error.get('type', '')}: {error.get('message', '')}" if error else "",
                final_image=image if image.is_file() else None,
                wandb_run=_wandb_run_id(path.parent),
            )
        )
    return jobs


def metric_columns(jobs: list[JobResult]) -> list[str]:
    """Numeric final metrics present in any job (other features add their own)."""
    keys = {k for job in jobs for k, v in job.final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return sorted(keys)


@contextmanager
def _data_dir(path: Path) -> Iterator[None]:
    """Point W&B's artifact staging into ``path`` while the table is logged.

    A logged table becomes an artifact whose files W&B stages in a per-user folder until
    they are uploaded; offline, that is at ``wandb sync`` time, maybe on another machine.
    Staging inside the sweep folder keeps the table's images with the sweep they belong to.
    """
    old = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("WANDB_DATA_DIR", None)
        else:
            os.environ["WANDB_DATA_DIR"] = old


def log_sweep_table(logger_cfg: Mapping[str, Any], tags: list[str], sweep_dir: Path, sweep_overrides: list[str]) -> None:
    """Start the summary run in the sweep's group, log the jobs table, finish it.

    Its config is the sweep's command line only: the sweep-level config still holds the
    defaults of the swept keys, which would misdescribe every job.
    """
    import wandb

    jobs = collect_jobs(sweep_dir)
    if not jobs:
        log.warning("W&B sweep table: no job left a result.json under %s; nothing to tabulate", sweep_dir)
        return
    metrics = metric_columns(jobs)
    table = wandb.Table(columns=["job", "status", "overrides", "final_image", *(f"final/{m}" for m in metrics), "error", "wandb_run"])
    for job in jobs:
        image = wandb.Image(str(job.final_image), caption=",".join(job.overrides)) if job.final_image else None
        values = [job.final.get(m) for m in metrics]
        table.add_data(job.job, job.status, ",".join(job.overrides), image, *values, job.error, job.wandb_run)
    completed = [j for j in jobs if j.status == "completed" and isinstance(j.final.get("objective"), (int, float))]
    summary: dict[str, Any] = {"sweep/jobs_total": len(jobs), "sweep/jobs_completed": len(completed)}
    if completed:
        best = max(completed, key=lambda j: j.final["objective"])
        summary.update({"sweep/best_objective": best.final["objective"], "sweep/best_job": best.job})
    with _data_dir(sweep_dir / "wandb"):
        run = start_run(
            logger_cfg,
            run_dir=sweep_dir,
            name=SUMMARY_NAME,
            group=str(logger_cfg.get("group") or sweep_group(sweep_dir)),
            job_type=SUMMARY_NAME,
            config={"sweep_dir": str(sweep_dir), "overrides": sweep_overrides, "jobs": len(jobs)},
            tags=tags,
        )
        try:
            run.log({TABLE_KEY: table})
            run.summary.update(summary)
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish(exit_code=0)
    log.info(sync_hint(run))


class WandbSweepTable(Callback):
    """Hydra callback: at the end of a multirun, log the table of all its jobs to W&B."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        logger_cfg = OmegaConf.to_container(config.get("logger") or OmegaConf.create(), resolve=True)
        assert isinstance(logger_cfg, dict)
        if logger_cfg.get("kind") != "wandb" or not logger_cfg.get("sweep_table", True):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        tags = run_tags({"tags": list(config.get("tags") or [])}, logger_cfg)
        sweep_overrides = [str(o) for o in config.hydra.overrides.task]
        try:
            log_sweep_table(logger_cfg, tags, sweep_dir, sweep_overrides)
        except Exception as exc:  # the jobs' results are on disk already; tracking must not fail the sweep
            log.warning("W&B sweep table failed (%s: %s); each job's files and W&B run are unaffected", type(exc).__name__, exc)
