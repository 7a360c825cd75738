"""Hydra callbacks of the app: checks that must happen before Hydra writes into a folder."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf, open_dict

from featviz.app.config import to_plain
from featviz.checkpoint import find_resume_point
from featviz.errors import CheckpointError
from featviz.rundir import RESULT_NAME

RUN_FILES = ("result.json", "metrics.jsonl", "final.png", "checkpoint.pt", "snapshots", "wandb", ".hydra", ".featviz.lock")


class OutputDirCheck(HydraCallback):
    """Hydra callback: checks that must pass before Hydra writes into the output folder.

    Hydra creates the run folder, its log file and its ``.hydra/`` record before featviz
    runs. So here, first: an unwritable folder is one line instead of a traceback from
    inside Hydra; a planted symlink in place of a file the run writes (its log above all)
    is refused, so nothing is written outside the folder; and a run into a folder that
    holds a run of another config is refused before Hydra rewrites that run's ``.hydra/``
    record (for a multirun: any of its jobs, each composed here as the launcher will).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = self._check(config, "hydra.run.dir")
        self._refuse_other_config(config, folder)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self._check(config, "hydra.sweep.dir")
        if any(sweep_dir.glob(f"*/{RESULT_NAME}")):  # a rerun of a sweep: check each job's folder
            for folder, job in self._sweep_jobs(config):
                self._refuse_other_config(job, folder)

    @staticmethod
    def _sweep_jobs(config: DictConfig) -> list[tuple[Path, DictConfig]]:
        """Each job of the sweep (basic sweeper) with its folder, composed as the launcher will."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if not str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).endswith("BasicSweeper"):
            return []  # another sweeper draws its jobs itself; each job checks its own folder
        loader = GlobalHydra.instance().config_loader()
        params = [f"{k}={v}" for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()]
        parsed = OverridesParser.create(config_loader=loader).parse_overrides([*params, *config.hydra.overrides.task])
        jobs = []
        for num, overrides in enumerate(o for batch in BasicSweeper.split_arguments(parsed, None) for o in batch):
            job = loader.load_sweep_config(config, list(overrides))
            with open_dict(job):
                job.hydra.job.num = num
            HydraConfig.instance().set_config(job)
            jobs.append((Path(str(job.hydra.sweep.dir)) / str(job.hydra.sweep.subdir), job))
        return jobs

    @staticmethod
    def _fail(message: str) -> None:
        from featviz.app.reporting import report

        sys.exit(report("featviz", message))

    @classmethod
    def _check(cls, config: DictConfig, key: str) -> Path:
        folder = Path(str(OmegaConf.select(config, key)))
        links = [p for p in folder.rglob("*") if p.is_symlink() and (p.suffix == ".log" or p.name in RUN_FILES)] if folder.is_dir() else []
        if links:
            cls._fail(f"{links[0]} is a symbolic link; featviz writes only inside its output folder: remove it, or choose another folder with {key}=...")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            cls._fail(f"cannot write to the output folder {folder} ({exc.strerror or exc}); choose a writable one with {key}=...")
        return folder

    @classmethod
    def _refuse_other_config(cls, config: DictConfig, folder: Path) -> None:
        if not (folder / RESULT_NAME).is_file():
            return
        HydraConfig.instance().set_config(config)  # so ${hydra:...} values resolve (Hydra sets it again for the job)
        job = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        try:
            find_resume_point(folder, to_plain(job))
        except CheckpointError as exc:
            cls._fail(str(exc))
