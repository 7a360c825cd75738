"""One job: a composed config in, one render into the job's output folder out.

Thin on purpose: it builds the parts (:mod:`featviz.app.build`), attaches the callbacks
(files, progress bar, metrics, logger, checkpoints) and calls :func:`featviz.render`. It
owns the job's failure record and the logger's teardown: whatever fails, ``result.json``
says so and the W&B run is finished. Rerunning in the same output folder resumes from its
checkpoint, or skips a run already completed.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from featviz.app.config import REPO_ROOT, to_plain

log = logging.getLogger("featviz")


def idle_cores() -> int:
    """Cores not busy now: the usable cores less the 1-minute load average, rounded, at least 1.

    On a 2-core machine with another job running, two torch threads were measured 6x slower
    than one (they wait on each other at every parallel region); a job that takes only the
    idle cores avoids that.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def set_threads(threads: int | str | None) -> None:
    """Apply the ``threads`` config: a count, ``auto`` (:func:`idle_cores`), or None (torch's default)."""
    import torch

    from featviz.errors import ConfigError

    if threads is None:
        return
    if threads == "auto":
        threads = idle_cores()
        log.info("threads=auto: %d torch thread(s) (load average %.1f)", threads, os.getloadavg()[0])
    try:
        count = int(threads)
    except (TypeError, ValueError):
        raise ConfigError(f"threads={threads!r} must be a whole number >= 1, auto (the idle cores) or null for torch's default") from None
    if count < 1:
        raise ConfigError(f"threads={threads} must be >= 1, auto (the idle cores) or null for torch's default")
    torch.set_num_threads(count)


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
    # Read versions from package metadata: importing torchvision just for its version
    # costs seconds (it pulls in torch._dynamo), on every job of a sweep.
    for package in ("torchvision", "hydra-core", "wandb", "numpy"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            env[package] = None
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


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
    # Imported here, not at the top: `featviz render --help` and Hydra's config errors then
    # answer without loading torch.
    import torch

    from featviz.app.build import build_metrics_callback, build_run
    from featviz.app.shared_model import take
    from featviz.checkpoint import Checkpointer, find_resume_point
    from featviz.metrics.activation import ActivationProbe
    from featviz.progress import ProgressBar
    from featviz.render import render
    from featviz.rundir import CHECKPOINT_NAME
    from featviz.writer import RunWriter

    # Before anything is written: the folder may hold this run finished, or half done.
    resume = find_resume_point(out_dir, container)
    if resume.completed is not None:
        print(f"featviz: {out_dir} already holds this run, completed; nothing to redo (a new output folder renders it again)")
        return dict(resume.completed.get("final") or {})
    writer = RunWriter(out_dir, config=container, extra={"overrides": overrides, "environment": environment()})
    logger_cfg = container.get("logger") or {}
    tracker = None
    try:
        set_threads(container.get("threads"))
        checkpointer = Checkpointer(out_dir / CHECKPOINT_NAME, every=container.get("checkpoint_every", 0), meta={"config": container})
        # An isolated job of a sweep takes the network its fork server built (shared_model).
        shared = take(container)
        parts = build_run(container, model=shared)
        writer.extra.update(device=str(parts.device), torch_threads=torch.get_num_threads(), shared_model=shared is not None)
        if resume.state is not None:
            writer.extra["resumed_from_step"] = resume.step
            log.info("resuming from %s at step %d", out_dir / CHECKPOINT_NAME, resume.step)
        metrics = build_metrics_callback(container.get("metrics") or {}, parts.device)
        if logger_cfg.get("kind", "none") != "none":
            from featviz.app.tracking import build_logger

            tracker = build_logger(logger_cfg, container, out_dir, overrides)
    except Exception as exc:
        writer.fail(exc, steps_done=resume.step)
        raise
    # The run's own callbacks (preconditioners, batch-term metrics) and the metrics first: they
    # add to result.final in on_end (the activation probe to each step's metrics), which the
    # writer and logger then record.
    probe = ActivationProbe(int(container.get("activation_every", 8)))
    callbacks: list[Any] = [*parts.callbacks, probe, writer] if metrics is None else [*parts.callbacks, probe, metrics, writer]
    if container.get("progress", True):
        callbacks.append(ProgressBar())
    if tracker is not None:
        callbacks.append(tracker)
    callbacks.append(checkpointer)  # last: it may stop the run after everyone has seen the step
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
            resume_from=resume.state,
        )
    except BaseException as exc:
        # The loop's on_error covers failures inside it; this also covers those around it
        # (validation before the loop, another callback's on_start or on_end), so result.json
        # always says what happened and the next job never logs into this run.
        if not writer.reported:
            writer.fail(exc, steps_done=resume.step)
        if tracker is not None:
            tracker.close(exit_code=1)
        raise
    log.info("final objective %.4g, %.2f steps/s; images in %s", result.final["objective"], result.steps_per_s, out_dir)
    return result.final


