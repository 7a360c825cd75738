"""Experiment tracking for the Hydra app: W&B runs per job, one table per sweep.

Kept out of the library (it imports Hydra to find the sweep a job belongs to) so that
``from featviz import render`` never needs Hydra or wandb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featviz.app.tracking.session import sweep_group
from featviz.app.tracking.wandb_logger import WandbLogger
from featviz.errors import ConfigError

__all__ = ["WandbLogger", "build_logger", "current_sweep_dir"]


def current_sweep_dir() -> str | None:
    """The running Hydra multirun's sweep folder, or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None


def build_logger(logger_cfg: Mapping[str, Any], config: Mapping[str, Any], out_dir: Path, overrides: Sequence[str]) -> WandbLogger:
    """The tracking callback for ``logger.kind``; jobs of one multirun share a W&B group."""
    kind = logger_cfg.get("kind")
    if kind != "wandb":
        raise ConfigError(f"logger.kind={kind!r} is not known; use logger=wandb or logger=none")
    sweep_dir = current_sweep_dir()
    group = sweep_group(sweep_dir) if sweep_dir is not None else None
    return WandbLogger(logger_cfg, config, out_dir, overrides, group=group)
