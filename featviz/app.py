"""The Hydra entry point: config in, one render into the job's output dir out.

Thin on purpose: it resolves the config, builds the parts (:mod:`featviz.builders`),
attaches the callbacks (files, progress bar, logger, checkpoints) and calls
:func:`featviz.render`. A :class:`FeatvizError` is printed as one line; a single run then
exits non-zero, while a multirun job records any failure in its ``result.json`` and lets
the sweep go on (:mod:`featviz.sweep_summary` lists the failures at the end). Rerunning in
the same output folder resumes from its checkpoint, or skips a run already completed.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("featviz")
REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_share(parallel_jobs: int) -> int:
    """Torch threads per job when ``parallel_jobs`` jobs share this machine's cores.

    ``parallel_jobs`` follows joblib's ``n_jobs``: -1 is one job per core, -2 all but one.
    Without this every job would start one thread per core and they would fight over them.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = int(parallel_jobs) if int(parallel_jobs) > 0 else max(1, cores + 1 + int(parallel_jobs))
    return max(1, cores // jobs)


OmegaConf.register_new_resolver("featviz.cpu_share", cpu_share, replace=True)


def set_threads(value: Any) -> None:
    """Apply the ``threads`` config (torch's CPU threads for this job; null keeps torch's default)."""
    import torch

    from featviz.errors import ConfigError

    if value is None:
        return
    try:
        threads = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"threads={value!r} must be a whole number >= 1, or null for torch's default") from None
    if threads < 1:
        raise ConfigError(f"threads={threads} must be >= 1, or null for torch's default")
    torch.set_num_threads(threads)


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


def run_job(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Render one config into ``out_dir``; returns the final metrics."""
    import torch

    from featviz.builders import build_run
    from featviz.checkpoint import CHECKPOINT_NAME, Checkpointer, find_resume_point
    from featviz.metrics import build_metrics_callback
    from featviz.outputs import ProgressBar, RunWriter
    from featviz.render import render

    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    # Before anything is written: the folder may hold this run finished, or half done.
    resume = find_resume_point(out_dir, container)
    if resume.completed is not None:
        print(f"featviz: {out_dir} already holds this run, completed; nothing to redo (a new output folder renders it again)")
        return dict(resume.completed.get("final") or {})
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    writer = RunWriter(out_dir, config=container, extra={"overrides": overrides, "environment": environment()})
    logger_cfg = container.get("logger") or {}
    tracker = None
    try:
        set_threads(container.get("threads"))
        checkpointer = Checkpointer(out_dir / CHECKPOINT_NAME, every=container.get("checkpoint_every", 0), meta={"config": container})
        parts = build_run(container)
        writer.extra.update(device=str(parts.device), torch_threads=torch.get_num_threads())
        if resume.state is not None:
            writer.extra["resumed_from_step"] = resume.step
            log.info("resuming from %s at step %d", out_dir / CHECKPOINT_NAME, resume.step)
        metrics = build_metrics_callback(container.get("metrics") or {}, parts.device)
        if logger_cfg.get("kind", "none") != "none":
            from featviz.tracking import build_logger

            tracker = build_logger(logger_cfg, container, out_dir, overrides)
    except Exception as exc:
        writer.fail(exc, steps_done=resume.step)
        raise
    # The run's own callbacks (preconditioners, batch-term metrics) and the metrics first: they
    # add to result.final in on_end, which the writer and logger then record.
    callbacks: list[Any] = [*parts.callbacks, writer] if metrics is None else [*parts.callbacks, metrics, writer]
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


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    from featviz.checkpoint import Preempted
    from featviz.errors import FeatvizError

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = f"job {hydra_cfg.job.num}: " if multirun else ""
    try:
        final = run_job(cfg, out_dir)
    except Preempted as exc:  # the whole process was told to stop, so a sweep stops too
        again = f"hydra.sweep.dir={hydra_cfg.sweep.dir}" if multirun else f"hydra.run.dir={out_dir}"
        hint = "" if exc.handed_over else f"; run the same command with {again} to resume"
        print(f"featviz: preempted: {job}{exc}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
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
