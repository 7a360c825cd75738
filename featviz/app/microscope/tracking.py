"""A microscope shard's W&B run: one per shard, in the sweep's group, its units as a ``wandb.Table``.

Logged once, when the shard ends, from the records on disk, so a resumed shard's table holds
the units of every attempt. Like the render jobs' logger it never fails the shard: the
units are already saved.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featviz.app.tracking import current_sweep_dir
from featviz.app.tracking.session import run_tags, start_run, sweep_group
from featviz.app.tracking.sweep_table import artifact_staging
from featviz.tools.microscope_files import UnitFiles

log = logging.getLogger("featviz")

TABLE_KEY = "microscope/units"
JOB_TYPE = "microscope-shard"


def log_shard(cfg: Mapping[str, Any], out_dir: Path, units: Sequence[UnitFiles], summary: Mapping[str, Any], overrides: Sequence[str]) -> None:
    """With ``logger.kind=wandb``: start the shard's run, log the table of its ``units``, its summary, finish it."""
    logger_cfg = dict(cfg.get("logger") or {})
    if logger_cfg.get("kind") != "wandb":
        return
    import wandb

    try:
        records = [(f, f.read_record() or {}) for f in units]
        metrics = sorted({k for _, r in records for k in r.get("metrics") or {}})
        table = wandb.Table(columns=["layer", "unit", "image", *metrics, "seconds"])
        for f, r in records:
            image = wandb.Image(str(f.path("png")), caption=f"{f.layer}:{f.unit}") if f.path("png").is_file() else None
            table.add_data(f.layer, f.unit, image, *((r.get("metrics") or {}).get(m) for m in metrics), r.get("seconds"))
        sweep_dir = current_sweep_dir(out_dir)
        m = cfg["microscope"]
        run = start_run(
            logger_cfg,
            run_dir=out_dir,
            name=f"shard={m['shard']}/{m['shards']}",
            group=str(logger_cfg.get("group") or sweep_group(sweep_dir or out_dir)),
            job_type=JOB_TYPE,
            config={**dict(cfg), "overrides": list(overrides)},
            tags=run_tags(cfg, logger_cfg),
        )
    except Exception as exc:  # noqa: BLE001 - tracking must not fail a shard whose units are saved
        log.warning("W&B run of this shard not started (%s: %s); its units are saved in %s", type(exc).__name__, exc, out_dir)
        return
    try:
        with artifact_staging(Path(run.settings.sync_dir)):
            run.log({TABLE_KEY: table})
        run.summary.update({f"microscope/{k}": v for k, v in summary.items()})
    except Exception as exc:  # noqa: BLE001
        log.warning("W&B table of this shard failed (%s: %s); its units are saved in %s", type(exc).__name__, exc, out_dir)
        run.finish(exit_code=1)
        return
    run.finish(exit_code=0)
