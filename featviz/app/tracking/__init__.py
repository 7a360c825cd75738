"""Experiment tracking for the Hydra app: W&B runs per job, one table per sweep.

Kept out of the library (it imports Hydra to find the sweep a job belongs to) so that
``from featviz import render`` never needs Hydra or wandb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featviz.app.tracking.session import swept_keys, sweep_group
from featviz.app.tracking.wandb_logger import WandbLogger
from featviz.errors import ConfigError

__all__ = ["WandbLogger", "build_logger", "current_sweep_dir"]


SWEEP_RECORD = "multirun.yaml"  # what Hydra's sweeper writes into the sweep folder before any job
SUBDIR_DEPTH = 3  # how far above a job's folder its sweep folder is looked for


def current_sweep_dir(out_dir: Path | None = None) -> str | None:
    """The running Hydra multirun's sweep folder, or None outside a multirun.

    Hydra's own record of the job says it in the job's process. A job rendered in a child
    process (``featviz.app.isolation``) has no Hydra state; there the sweep is the folder
    above ``out_dir`` that holds Hydra's ``multirun.yaml``.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        return str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    if out_dir is None:
        return None
    return next((str(p) for p in Path(out_dir).absolute().parents[:SUBDIR_DEPTH] if (p / SWEEP_RECORD).is_file()), None)


def build_logger(logger_cfg: Mapping[str, Any], config: Mapping[str, Any], out_dir: Path, overrides: Sequence[str]) -> WandbLogger:
    """The tracking callback for ``logger.kind``; jobs of one multirun share a W&B group and are named by its swept keys."""
    kind = logger_cfg.get("kind")
    if kind != "wandb":
        raise ConfigError(f"logger.kind={kind!r} is not known; use logger=wandb or logger=none")
    sweep_dir = current_sweep_dir(out_dir)
    if sweep_dir is None:
        return WandbLogger(logger_cfg, config, out_dir, overrides)
    return WandbLogger(logger_cfg, config, out_dir, overrides, group=sweep_group(sweep_dir), swept=swept_keys(sweep_dir), in_sweep=True)
