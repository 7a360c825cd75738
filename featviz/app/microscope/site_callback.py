"""Hydra callback: write the microscope's site when its multirun ends (``microscope.site``).

Registered by ``conf/microscope.yaml`` after the sweep summary, so Hydra (which calls end
hooks in reverse) runs it first: the site is written even when the summary then exits
non-zero for a failed shard, showing every unit that was finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from featviz.errors import FeatvizError
from featviz.tools.microscope_site import write_site


class MicroscopeSite(Callback):
    """Write ``<sweep dir>/site/`` from every shard's saved units."""

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
