"""Hydra callbacks of the app: checks that must happen before Hydra writes into a folder."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf


class OutputDirCheck(HydraCallback):
    """Hydra callback: refuse an unwritable output folder in one line, before Hydra writes to it.

    Hydra creates the run folder and its ``.hydra/`` files before featviz runs, so on a
    read-only or full disk the user would otherwise get a traceback from inside Hydra.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        folder = Path(str(OmegaConf.select(config, key)))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            print(f"featviz: error: cannot write to the output folder {folder} ({exc.strerror or exc}); choose a writable one with {key}=...", file=sys.stderr)
            sys.exit(1)
