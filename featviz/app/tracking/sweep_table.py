"""After a Hydra multirun, one extra W&B run that puts the whole sweep in one table.

Comparing a regularization spectrum means looking at all final images side by side; a
W&B table with one row per job (overrides, final image, final metrics) does that in the
dashboard. It is built from the ``result.json`` and ``final.png`` each job left in the
sweep folder, not from in-memory state, so it works for any launcher (jobs may have run
in other processes) and includes jobs that failed, marked as such.

Registered in ``conf/config.yaml`` under ``hydra.callbacks``; it acts only when
``logger.kind`` is ``wandb`` (the table only when ``logger.sweep_table`` is true), and it
prints the sweep's one ``wandb sync`` line (the jobs keep quiet about theirs). Like the
per-job logger it never fails the command: the sweep's own results are already on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from featviz.app.config import environ_set
from featviz.app.tracking.session import check_mode, run_tags, start_run, sweep_group, sweep_sync_hint, sync_hint
from featviz.rundir import JobRecord, read_sweep

log = logging.getLogger("featviz")

SUMMARY_NAME = "sweep-summary"
TABLE_KEY = "sweep/jobs"
EFFECTS_KEY = "sweep/effects"  # each swept setting's paired comparisons (featviz.app.report.effects)


def collect_jobs(sweep_dir: Path) -> list[JobRecord]:
    """Every job under ``sweep_dir`` that wrote a ``result.json``, in job order."""
    return [job for job in read_sweep(sweep_dir) if job.has_result]


def metric_columns(jobs: list[JobRecord]) -> list[str]:
    """Numeric final metrics present in any job (other features add their own)."""
    keys = {k for job in jobs for k, v in job.final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return sorted(keys)


@contextmanager
def artifact_staging(path: Path) -> Iterator[None]:
    """Point W&B's artifact staging into ``path`` while the table is logged.

    A logged table becomes an artifact whose files (the table and every job's final image)
    W&B stages in a per-user folder until they are uploaded; offline, that is at
    ``wandb sync`` time, maybe on another machine. Staging inside the table run's own
    folder keeps the images with the run that needs them: syncing that folder (as the
    sweep's one ``wandb sync`` line does) uploads them.
    """
    with environ_set({"WANDB_DATA_DIR": str(path)}):
        yield


def effect_rows(jobs: list[JobRecord]) -> list[dict[str, str]]:
    """The report's paired comparisons of each swept setting (empty when no setting varies)."""
    from featviz.app.report.effects import compute, comparison_rows

    effects = compute(jobs)
    return comparison_rows(effects) if effects is not None else []


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
    run = start_run(
        logger_cfg,
        run_dir=sweep_dir,
        name=SUMMARY_NAME,
        group=str(logger_cfg.get("group") or sweep_group(sweep_dir)),
        job_type=SUMMARY_NAME,
        config={"sweep_dir": str(sweep_dir), "overrides": sweep_overrides, "jobs": len(jobs)},
        tags=tags,
    )
    rows = effect_rows(jobs)
    try:
        with artifact_staging(Path(run.settings.sync_dir)):
            run.log({TABLE_KEY: table, **({EFFECTS_KEY: wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])} if rows else {})})
        run.summary.update(summary)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish(exit_code=0)
    log.debug(sync_hint(run))


class WandbSweepTable(Callback):
    """Hydra callback: at the end of a multirun, log the table of all its jobs to W&B."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        logger_cfg = OmegaConf.to_container(config.get("logger") or OmegaConf.create(), resolve=True, enum_to_str=True)
        assert isinstance(logger_cfg, dict)
        if logger_cfg.get("kind") != "wandb":
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        with_table = bool(logger_cfg.get("sweep_table", True))
        if with_table:
            tags = run_tags({"tags": list(config.get("tags") or [])}, logger_cfg)
            sweep_overrides = [str(o) for o in config.hydra.overrides.task]
            try:
                log_sweep_table(logger_cfg, tags, sweep_dir, sweep_overrides)
            except Exception as exc:  # the jobs' results are on disk already; tracking must not fail the sweep
                log.warning("W&B sweep table failed (%s: %s); each job's files and W&B run are unaffected", type(exc).__name__, exc)
                with_table = False
        if check_mode(logger_cfg) == "offline":
            log.info(sweep_sync_hint(sweep_dir, with_table))  # one line for the sweep, not one per job
