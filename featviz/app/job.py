"""One job: a composed config in, one render into the job's output folder out.

Thin on purpose: a job is a pack of one (:mod:`featviz.app.pack` builds the parts, attaches
the callbacks and owns the failure record and the logger's teardown); here it gets its
folder's lock and, in a sweep, its own child process. Rerunning in the same output folder
resumes from its checkpoint, or skips a run already completed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from featviz.app.config import to_plain

log = logging.getLogger("featviz")


def run_job(cfg: DictConfig, out_dir: Path, isolate: bool = False) -> dict[str, Any]:
    """Render one config into ``out_dir``, holding the folder's lock; returns the final metrics.

    ``isolate`` renders in a child process (:mod:`featviz.app.isolation`), so a crash in
    native code fails this job only.
    """
    from featviz.rundir import RunLock

    container = to_plain(cfg)
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    with RunLock(out_dir):
        if not isolate:
            return _render_job(container, out_dir, overrides)
        from featviz.app.isolation import run_isolated
        from featviz.app.shared_model import server_env

        record = {"overrides": overrides, "config": container}
        return run_isolated(_render_job, (container, out_dir, overrides), out_dir, record, server_env(container))


def _render_job(container: dict[str, Any], out_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """One job: a pack of one (:mod:`featviz.app.pack`); its final metrics, or its error raised."""
    # Imported here, not at the top: `featviz render --help` and Hydra's config errors then
    # answer without loading torch.
    from featviz.app.pack import JobSpec, run_pack

    (outcome,) = run_pack([JobSpec(container, out_dir, overrides)])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
