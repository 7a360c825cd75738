"""Hydra callback: check the microscope's settings before its multirun starts, and write its
site when the multirun ends (``microscope.site``).

Registered by ``conf/microscope.yaml`` after the sweep summary, so Hydra (which calls end
hooks in reverse) runs it first: the site is written even when the summary then exits
non-zero for a failed shard, showing every unit that was finished.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from featviz.app.config import to_plain
from featviz.app.reporting import report
from featviz.app.microscope.plan import check_settings
from featviz.errors import FeatvizError
from featviz.tools.microscope_site import write_site


class MicroscopeSite(Callback):
    """Refuse a microscope block out of range before any shard runs; write ``<sweep dir>/site/``
    from every shard's saved units at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_settings(to_plain(config.microscope))
        except FeatvizError as exc:  # exit here: Hydra turns a callback's exception into a warning
            sys.exit(report("featviz microscope", exc))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not bool(config.microscope.site):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            index = write_site(sweep_dir)
        except FeatvizError as exc:  # no shard got as far as its first unit: the summary says why
            print(f"featviz: microscope site not written: {exc}")
            return
        print(f"featviz: microscope site in {index} (rebuild it with `featviz microscope-site {sweep_dir}`)")
