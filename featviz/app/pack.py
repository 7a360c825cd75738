"""A pack: jobs that share one network, rendered as one batched optimization.

A sweep's jobs that differ only in what the loop optimizes (seeds, regularizer weights,
learning rates, objectives, parameterizations) can share every forward pass
(:func:`featviz.render.render_pack`). Here each job of a pack gets exactly what a job run
alone gets: its folder's resume or skip, its ``RunWriter`` (``result.json`` with
``pack: {id, size}``), metrics, progress, W&B run and checkpointer; a job that fails fails
alone. A single job (:func:`featviz.app.job.run_job`) is a pack of one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featviz.app.config import git_commit, version
from featviz.errors import FeatvizError

log = logging.getLogger("featviz")


@dataclass
class JobSpec:
    """One job of a pack as its launcher composed it."""

    config: dict[str, Any]  # the resolved run config
    out_dir: Path
    overrides: list[str]


@dataclass
class Pack:
    """Jobs rendered as one optimization: their specs, their numbers in the sweep and the pack's id."""

    id: int
    specs: list[JobSpec] = field(default_factory=list)
    nums: list[int] = field(default_factory=list)
    images: int = 0  # images per step, all jobs together
    #: The pack as a blocking factor of the sweep's design (:func:`featviz.app.fused.blocking`); empty: not a fused sweep's pack.
    blocking: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> dict[str, Any]:
        """What a pack's jobs are told of it (it crosses to a child process or a Slurm task): id, size and the design."""
        return {"id": self.id, "size": len(self.specs), **({"blocking": self.blocking} if self.blocking else {})}


@dataclass
class _Prepared:
    """A job ready for the loop, with what must be told of its end."""

    index: int
    spec: JobSpec
    job: Any  # featviz.render.Job
    model: Any  # featviz.models.FeatureModel
    device: Any  # torch.device
    writer: Any  # featviz.writer.RunWriter
    tracker: Any | None  # the W&B callback, when logging
    steps_done: int


def run_pack(specs: Sequence[JobSpec], pack: dict[str, Any] | None = None) -> list[dict[str, Any] | BaseException]:
    """Render ``specs`` as one pack; each job's final metrics, or the error it failed with.

    ``pack`` (:attr:`Pack.info`) is recorded in each job's ``result.json``: ``pack: {id, size}`` and,
    from a fused sweep, ``blocking`` (the pack as a blocking factor: the report pairs within it). A job
    already completed in its folder is skipped (its recorded final metrics are returned); one
    with a checkpoint resumes from it. Jobs whose configs build different networks are
    rendered one network after another. A stop of the whole process (Preempted, Ctrl-C) is
    raised after every job has recorded it.
    """
    from featviz.app.threads import set_threads
    from featviz.render import render_pack

    if specs:
        set_threads(specs[0].config.get("threads"))
    outcomes: list[dict[str, Any] | BaseException | None] = [None] * len(specs)
    models: dict[str, Any] = {}
    groups: dict[int, list[_Prepared]] = {}
    for i, spec in enumerate(specs):
        try:
            prepared = _prepare(i, spec, models, pack)
        except Exception as exc:  # noqa: BLE001 - _prepare recorded it; this job only
            outcomes[i] = exc
            continue
        if isinstance(prepared, dict):
            outcomes[i] = prepared
        else:
            groups.setdefault(id(prepared.model), []).append(prepared)
    for group in groups.values():
        try:
            results = render_pack(group[0].model, [p.job for p in group], group[0].device)
        except BaseException as exc:
            for p in group:
                _record_failure(p, exc)
            raise
        for p, result in zip(group, results):
            if isinstance(result, BaseException):
                _record_failure(p, result)
                outcomes[p.index] = result
            else:
                log.info("objective on the last step's views %.4g, %.2f steps/s; images in %s", result.final["objective"], result.steps_per_s, p.spec.out_dir)
                outcomes[p.index] = result.final
    return [o if o is not None else RuntimeError("job never ran") for o in outcomes]


def pack_record(info: dict[str, Any]) -> dict[str, Any]:
    """What ``result.json`` holds of a pack's :attr:`Pack.info`: ``pack: {id, size}`` and, from a fused
    sweep, ``blocking`` beside it (so ``pack`` reads the same whether or not the sweep recorded a design)."""
    record: dict[str, Any] = {"pack": {"id": info["id"], "size": info["size"]}}
    if info.get("blocking"):
        record["blocking"] = dict(info["blocking"])
    return record


def _prepare(index: int, spec: JobSpec, models: dict[str, Any], pack: dict[str, Any] | None) -> _Prepared | dict[str, Any]:
    """Build one job's parts and callbacks on the pack's network; its final metrics if already completed.

    ``models`` maps a network's key (:func:`featviz.app.shared_model.key`) to the network
    built for an earlier job of the pack (or by the fork server), so a pack builds each once.
    """
    import torch

    from featviz.app.build import build_metrics_callback, build_run
    from featviz.app.shared_model import key, take
    from featviz.checkpoint import Checkpointer, find_resume_point
    from featviz.metrics.activation import ActivationProbe
    from featviz.progress import ProgressBar
    from featviz.render import Job
    from featviz.rundir import CHECKPOINT_NAME
    from featviz.writer import RunWriter

    container, out_dir = spec.config, spec.out_dir
    # Before anything is written: the folder may hold this run finished, or half done.
    resume = find_resume_point(out_dir, container)
    if resume.completed is not None:
        print(f"featviz: {out_dir} already holds this run, completed; nothing to redo (a new output folder renders it again)")
        return dict(resume.completed.get("final") or {})
    extra: dict[str, Any] = {"overrides": spec.overrides, "environment": environment()}
    if pack is not None:
        extra.update(pack_record(pack))
    writer = RunWriter(out_dir, config=container, extra=extra)
    logger_cfg = container.get("logger") or {}
    tracker = None
    try:
        checkpointer = Checkpointer(out_dir / CHECKPOINT_NAME, every=container.get("checkpoint_every", 0), meta={"config": container})
        net_key = key(container)
        # An isolated job of a sweep takes the network its fork server built (shared_model).
        shared = models.get(net_key) or take(container)
        parts = build_run(container, model=shared)
        models.setdefault(net_key, parts.model)
        writer.extra.update(device=str(parts.device), torch_threads=torch.get_num_threads(), shared_model=shared is not None)
        if resume.state is not None:
            writer.extra["resumed_from_step"] = resume.step
            log.info("resuming from %s at step %d", out_dir / CHECKPOINT_NAME, resume.step)
        metrics = build_metrics_callback(container.get("metrics") or {}, parts.device)
        if logger_cfg.get("kind", "none") != "none":
            from featviz.app.tracking import build_logger

            tracker = build_logger(logger_cfg, container, out_dir, spec.overrides)
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
    job = Job(
        parts.objective,
        param=parts.param,
        transforms=parts.transforms,
        regularizers=parts.regularizers,
        optimizer=parts.optimizer,
        steps=int(container["steps"]),
        snapshots=container.get("snapshots") or (),
        log_every=int(container.get("log_every", 1)),
        callbacks=callbacks,
        generator=parts.generator,
        resume_from=resume.state,
    )
    return _Prepared(index, spec, job, parts.model, parts.device, writer, tracker, resume.step)


def _record_failure(prepared: _Prepared, error: BaseException) -> None:
    """``result.json`` says why (unless the loop's callbacks already did); the W&B run is finished."""
    if not prepared.writer.reported:
        prepared.writer.fail(error, steps_done=prepared.steps_done)
    if prepared.tracker is not None:
        prepared.tracker.close(exit_code=1)


def environment() -> dict[str, Any]:
    """Versions, device and git commit, so a result can be traced to what made it."""
    import torch

    env: dict[str, Any] = {
        "featviz": version(),
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
    env["git_commit"] = git_commit()
    return env


def outcome_lines(outcomes: Sequence[dict[str, Any] | BaseException]) -> list[dict[str, Any] | str]:
    """Each job's final metrics, or its error as one line: what crosses a process boundary."""
    return [o if isinstance(o, dict) else (str(o) if isinstance(o, FeatvizError) else f"{type(o).__name__}: {o}") for o in outcomes]


def run_pack_lines(specs: list[JobSpec], pack: dict[str, Any]) -> list[dict[str, Any] | str]:
    """:func:`run_pack` with its errors as lines (the target of an isolated pack, and of a Slurm array task)."""
    return outcome_lines(run_pack(specs, pack))


def crashed(pack: Pack, why: str) -> list[dict[str, Any] | str]:
    """A pack whose process died: each job not completed by then is recorded failed, with the pack's id."""
    from featviz.app.isolation import mark_crashed
    from featviz.rundir import RESULT_NAME, read_json

    reason = f"pack {pack.id} ({len(pack.specs)} jobs): {why}"
    lines: list[dict[str, Any] | str] = []
    for spec in pack.specs:
        mark_crashed(spec.out_dir, reason, {"overrides": spec.overrides, "config": spec.config, **pack_record(pack.info)})
        result = read_json(spec.out_dir / RESULT_NAME) or {}
        lines.append(dict(result.get("final") or {}) if result.get("status") == "completed" else reason)
    return lines
