"""The Hydra entry point of a render: one job, its failure handling, and the one-line errors.

A FeatvizError is printed as one line; a single run then exits non-zero, while a multirun
job records the failure in its result.json and lets the sweep go on; the sweep summary
(:mod:`featviz.app.sweep_summary`) lists the failures at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from featviz.app.config import CONF_DIR
from featviz.app.job import run_job
from featviz.errors import FeatvizError, Preempted


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    """Render one job of the composed config (``python -m featviz [overrides]``)."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = f"job {hydra_cfg.job.num}: " if multirun else ""
    try:
        final = run_job(cfg, out_dir, isolate=multirun if cfg.get("isolate") is None else bool(cfg.isolate))
    except Preempted as exc:  # the whole process was told to stop, so a sweep stops too
        again = f"hydra.sweep.dir={hydra_cfg.sweep.dir}" if multirun else f"hydra.run.dir={out_dir}"
        hint = "" if exc.handed_over else f"; run the same command with {again} to resume"
        what = "interrupted" if exc.signal_name == "SIGINT" else "preempted"
        print(f"featviz: {what}: {job}{exc}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the loop's handler is in place: nothing to resume yet
        print(f"featviz: interrupted: {job}before the first step; nothing was rendered", file=sys.stderr)
        sys.exit(130)
    except FeatvizError as exc:
        print(f"featviz: error: {job}{exc}", file=sys.stderr)
        if multirun:
            return None
        sys.exit(1)
    except Exception as exc:  # a bug, NaN or OOM in one job must not cost the sweep its other jobs
        if not multirun:
            raise
        print(f"featviz: error: {job}{type(exc).__name__}: {exc} (traceback in {out_dir / 'result.json'}); the sweep goes on", file=sys.stderr)
        return None
    print(f"featviz: images in {out_dir} (final.png, snapshots/, metrics.jsonl, result.json)")
    return final
