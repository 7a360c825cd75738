"""The Hydra entry point: config in, one render into the job's output dir out.

Thin on purpose: it resolves the config, builds the parts (:mod:`featviz.builders`),
attaches the callbacks (files, progress bar, logger) and calls :func:`featviz.render`.
A :class:`FeatvizError` is printed as one line; a single run then exits non-zero, while a
multirun job records the failure in its ``result.json`` and lets the sweep go on.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("featviz")
REPO_ROOT = Path(__file__).resolve().parent.parent


def environment() -> dict[str, Any]:
    """Versions, device and git commit, so a result can be traced to what made it."""
    import torch

    import featviz

    env: dict[str, Any] = {
        "featviz": featviz.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def run_job(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Render one config into ``out_dir``; returns the final metrics."""
    from featviz.builders import build_run
    from featviz.outputs import ProgressBar, RunWriter
    from featviz.render import render

    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    writer = RunWriter(out_dir, config=container, extra={"overrides": overrides, "environment": environment()})
    logger_cfg = container.get("logger") or {}
    tracker = None
    try:
        parts = build_run(container)
        if logger_cfg.get("kind", "none") != "none":
            from featviz.tracking import build_logger

            tracker = build_logger(logger_cfg, container, out_dir, overrides)
    except Exception as exc:
        writer.write_result("failed", {}, steps_done=0, error={"type": type(exc).__name__, "message": str(exc)})
        raise
    callbacks: list[Any] = [writer]
    if container.get("progress", True):
        callbacks.append(ProgressBar())
    if tracker is not None:
        callbacks.append(tracker)
    try:
        result = render(
            parts.model,
            parts.objective,
            param=parts.param,
            transforms=parts.transforms,
            regularizers=parts.regularizers,
            optimizer=parts.optimizer,
            steps=int(container["steps"]),
            snapshots=container.get("snapshots") or (),
            log_every=int(container.get("log_every", 1)),
            callbacks=callbacks,
            device=parts.device,
            generator=parts.generator,
        )
    except BaseException as exc:
        # The loop's on_error covers failures inside it; this also covers those around it
        # (validation before the loop, another callback's on_start or on_end), so result.json
        # always says what happened and the next job never logs into this run.
        if not writer.reported:
            writer.write_result("failed", {}, steps_done=0, error={"type": type(exc).__name__, "message": str(exc)})
        if tracker is not None:
            tracker.close(exit_code=1)
        raise
    log.info("final objective %.4g, %.2f steps/s; images in %s", result.final["objective"], result.steps_per_s, out_dir)
    return result.final


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    from featviz.errors import FeatvizError

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        final = run_job(cfg, out_dir)
    except FeatvizError as exc:
        print(f"featviz: error: {exc}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return None
        sys.exit(1)
    print(f"featviz: images in {out_dir} (final.png, snapshots/, metrics.jsonl, result.json)")
    return final
