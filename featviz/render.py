"""The render loop: optimize parameterized images so their objectives go up.

``render(model, objective, ...)`` is the whole library in one call and needs neither Hydra
nor W&B. :func:`render_pack` is the same loop over a *pack* of jobs that share one network:
a sweep's settings (seeds, regularizer weights, learning rates, objectives, parameterizations)
optimized together, every view of every job going through the network as one batch. A single
render is a pack of one; there is no second loop. Everything that watches a job (files,
progress bar, W&B, checkpoints) is one of that job's :class:`Callback`\\ s.

Step ``k`` means "after k optimizer updates": step 0 is the initial image and the last
recorded step is ``steps``. Metrics are turned into Python floats (a host-device sync on
GPU) only at recorded steps, every ``log_every`` steps plus snapshot steps and the last.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from featviz.callbacks import Callback, RenderContext, RenderResult, StepRecord
from featviz.errors import CheckpointError, ConfigError, NonFiniteLossError, Preempted, check_seed
from featviz.models.feature_model import FeatureModel
from featviz.models.layout import LayerMap
from featviz.objectives.base import Objective
from featviz.optimizers import eager
from featviz.params.base import ImageParam
from featviz.params.fourier import FFTImage
from featviz.regularizers.base import Regularizer
from featviz.transforms import Compose, Transform

STATE_FORMAT = 1  # bump when the saved layout changes, so old files are refused with a clear message

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

#: What stops a whole pack rather than one job: the process was told to stop (a signal the
#: checkpointers turned into Preempted, Ctrl-C, an exit). Every job has saved its state by then.
PACK_STOPS = (Preempted, KeyboardInterrupt, SystemExit)


@dataclass
class RunParts:
    """Everything ``render`` needs, built from one config."""

    model: FeatureModel
    objective: Objective
    param: ImageParam
    transforms: Compose
    regularizers: list[Regularizer]
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    generator: torch.Generator
    device: torch.device
    # Callbacks the config asks for (preconditioners, the diversity metric of batch runs); the
    # app puts them before its RunWriter so what they add to result.final is recorded.
    callbacks: list[Callback] = field(default_factory=list)


@dataclass
class Job:
    """One optimization of a pack: everything of :func:`render` but the network and the device.

    Its random stream is its own (``generator``, else one seeded from ``seed``): a job draws
    the same initial image and the same views in a pack as alone.
    """

    objective: Objective
    param: ImageParam | None = None
    transforms: Transform | Sequence[Transform] | None = None
    regularizers: Sequence[Regularizer] = ()
    optimizer: OptimizerFactory | None = None
    steps: int = 512
    seed: int = 0
    snapshots: Iterable[int] = ()
    log_every: int = 1
    callbacks: Sequence[Callback] = ()
    generator: torch.Generator | None = None
    resume_from: str | os.PathLike[str] | Mapping[str, Any] | None = None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={device!r} is not a device featviz renders on; use device=auto, cpu, cuda or cuda:N")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps but no Apple GPU is visible; use device=auto or device=cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is visible; use device=auto or device=cpu")
    return dev


def _snapshot_step(value: Any) -> int:
    """A snapshot entry as a step number; anything else (a name, a path) is refused."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"snapshots entry {value!r} is not a step number; use e.g. snapshots=[0,64,256]") from None


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return eager(torch.optim.Adam)(params, lr=0.05)


def check_lr(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        lr = group.get("lr")
        if lr is None:
            continue
        lr = float(lr)
        if not math.isfinite(lr) or lr < 0:
            raise ConfigError(f"optimizer.lr={lr} must be a finite number >= 0 (0.05 is the default)")


def render(
    model: FeatureModel,
    objective: Objective,
    param: ImageParam | None = None,
    transforms: Transform | Sequence[Transform] | None = None,
    regularizers: Sequence[Regularizer] = (),
    optimizer: OptimizerFactory | None = None,
    steps: int = 512,
    seed: int = 0,
    snapshots: Iterable[int] = (),
    log_every: int = 1,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device = "auto",
    generator: torch.Generator | None = None,
    resume_from: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> RenderResult:
    """Optimize ``param``'s images to maximize ``objective`` on ``model``: a pack of one job.

    Args:
        model: a :class:`FeatureModel` (see :func:`featviz.models.build_model`).
        objective: what to maximize; its ``layers`` decide where the forward pass stops.
        param: the image parameterization; default a 128 px decorrelated FFT image.
        transforms: applied to the images before each forward pass (transformation
            robustness); default: resize to the model's input size only.
        regularizers: weighted penalties added to the loss.
        optimizer: ``factory(params) -> torch.optim.Optimizer``; default Adam(lr=0.05).
        steps: number of optimizer updates (>= 1).
        seed: seeds the one generator used for init and every random transform.
        snapshots: steps at which callbacks are told to save images.
        log_every: record metrics every N steps (a GPU sync each time).
        callbacks: watchers of the run; see :class:`Callback`.
        device: ``auto``, ``cpu`` or ``cuda``.
        generator: use this generator instead of one seeded from ``seed`` (a param built
            with the same generator then shares its random stream).
        resume_from: a checkpoint (path or loaded state, see :mod:`featviz.checkpoint`) to
            continue from: parameter, optimizer, generator, step and metrics are restored.
    """
    job = Job(objective, param, transforms, regularizers, optimizer, steps, seed, snapshots, log_every, callbacks, generator, resume_from)
    (outcome,) = render_pack(model, [job], device)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class _Run:
    """A job of a pack as the loop tracks it: its parts, its context, its step and its last record."""

    def __init__(self, job: Job, model: FeatureModel, dev: torch.device) -> None:
        if int(job.steps) < 1:
            raise ConfigError(f"steps={job.steps} must be >= 1")
        if int(job.log_every) < 1:
            raise ConfigError(f"log_every={job.log_every} must be >= 1")
        steps = int(job.steps)
        generator = job.generator if job.generator is not None else torch.Generator().manual_seed(check_seed(job.seed))
        param = job.param if job.param is not None else FFTImage(128, generator=generator)
        transforms = job.transforms
        if transforms is None:
            transforms = Compose([])
        elif not isinstance(transforms, Transform):
            transforms = Compose(list(transforms))
        param = param.to(dev)
        try:
            opt = (job.optimizer or _default_optimizer)(param.parameters())
        except ValueError as exc:  # torch.optim validates its own arguments
            raise ConfigError(f"the optimizer rejected its settings ({exc}); check optimizer.lr and the other optimizer.* values") from exc
        check_lr(opt)
        # Validate layer names and unit indices on the shapes the model will actually see.
        with torch.no_grad():
            probe = transforms(param(), torch.Generator().manual_seed(0))
        model.check_layers(job.objective.layers)
        shapes = model.layer_shapes(tuple(probe.shape[-2:]), sorted(job.objective.layers))
        job.objective.validate(shapes, param.batch)
        snaps = frozenset(s for s in map(_snapshot_step, job.snapshots) if 0 <= s <= steps)
        self.ctx = RenderContext(model, job.objective, param, opt, transforms, generator, steps, snaps, dev)
        if job.resume_from is not None:
            self.ctx.start_step, self.ctx.history = restore(job.resume_from, param, opt, generator)
            if self.ctx.start_step > steps:
                raise ConfigError(f"the checkpoint is at step {self.ctx.start_step}, past steps={steps}; resume with the steps it was made with")
        self.job = job
        self.regularizers = list(job.regularizers)
        self.log_every = int(job.log_every)
        self.step = self.ctx.start_step
        self.record: StepRecord | None = None
        self.loss: torch.Tensor | None = None
        self.t0 = 0.0

    def start(self) -> None:
        for cb in self.job.callbacks:
            cb.on_start(self.ctx)

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's images and the views of them the network sees."""
        images = self.ctx.param()
        return images, self.ctx.transforms(images, self.ctx.generator)

    def score(self, images: torch.Tensor, acts: Mapping[str, torch.Tensor]) -> None:
        """Score this job's rows, record the step if it is one to record; keeps the loss."""
        ctx, step = self.ctx, self.step
        per_image = score_views(ctx.objective, acts, images.shape[0])
        score = per_image.mean()
        terms = {r.name: r.weight * r.penalty(images).mean() for r in self.regularizers}
        self.loss = -score + sum(terms.values(), torch.zeros((), device=ctx.device))
        if not (step % self.log_every == 0 or step == ctx.steps or step in ctx.snapshots):
            return
        metrics = {"objective": float(score.detach()), "loss": float(self.loss.detach())}
        metrics.update({f"reg/{k}": float(v.detach()) for k, v in terms.items()})
        metrics["lr"] = float(ctx.optimizer.param_groups[0].get("lr", float("nan")))
        if not bool(torch.isfinite(images).all()):
            raise NonFiniteLossError(
                f"the image became non-finite (NaN/Inf) at step {step}; check param.sd and lower optimizer.lr (snapshots so far are kept)"
            )
        if not math.isfinite(metrics["loss"]):
            raise NonFiniteLossError(f"loss became {metrics['loss']} at step {step}; lower optimizer.lr or the regularizer weights (snapshots so far are kept)")
        self.record = StepRecord(step, images.detach(), metrics, per_image.detach().tolist(), step in ctx.snapshots)
        ctx.history.append({"step": step, **metrics})
        for cb in self.job.callbacks:
            cb.on_step(ctx, self.record)

    @property
    def done(self) -> bool:
        return self.step >= self.ctx.steps

    def update(self) -> None:
        """The optimizer step after the pack's backward, then the callbacks that follow it."""
        self.ctx.optimizer.step()
        self.step += 1
        for cb in self.job.callbacks:
            cb.on_after_update(self.ctx, self.step)

    def finish(self) -> RenderResult:
        wall = time.perf_counter() - self.t0
        record, ctx = self.record, self.ctx
        assert record is not None
        final = {
            "objective": record.metrics["objective"],
            "objective_max": max(h["objective"] for h in ctx.history),
            "loss": record.metrics["loss"],
            "wall_time_s": wall,
            "steps_per_s": (ctx.steps - ctx.start_step) / wall if wall > 0 else float("nan"),
        }
        result = RenderResult(record.images.cpu(), ctx.history, ctx.steps, wall, final)
        for cb in self.job.callbacks:
            cb.on_end(ctx, result)
        return result

    def fail(self, error: BaseException) -> BaseException:
        for cb in self.job.callbacks:
            cb.on_error(self.ctx, error, self.step)
        return error


def render_pack(model: FeatureModel, jobs: Sequence[Job], device: str | torch.device = "auto") -> list[RenderResult | BaseException]:
    """Optimize every job of ``jobs`` together on ``model``; each job's result, or what it failed with.

    Each step every job draws its images and its own views; all views of one shape go through
    the network as one batch, stopping at the deepest layer any job reads; each job scores its
    own rows with its own objective and regularizers; one backward of the summed losses (rows
    do not mix in an eval-mode network, so each image's gradient is its own job's); each job's
    optimizer steps its own parameters. A job that reaches its step count leaves the pack; one
    that fails (validation, a non-finite loss, a callback's error) fails alone, with its
    callbacks told. A stop of the whole process (:data:`PACK_STOPS`) ends every job and is raised.
    """
    dev = resolve_device(device)
    model = model.to(dev)
    outcomes: list[RenderResult | BaseException | None] = [None] * len(jobs)
    live: dict[int, _Run] = {}
    try:
        for i, job in enumerate(jobs):
            try:
                run = _Run(job, model, dev)
                run.start()
            except PACK_STOPS:
                raise
            except Exception as exc:  # noqa: BLE001 - this job's bad input (not started: no callback is told); the others go on
                outcomes[i] = exc
                continue
            live[i] = run
        t0 = time.perf_counter()  # one clock for the pack: a job's wall time is the time until it left the pack
        for run in live.values():
            run.t0 = t0
        while live:
            for i, error in _forward(model, live).items():
                outcomes[i] = live.pop(i).fail(error)
            for i in [i for i, run in live.items() if run.done]:
                run = live.pop(i)
                try:
                    outcomes[i] = run.finish()
                except PACK_STOPS:
                    raise
                except Exception as exc:  # noqa: BLE001 - an end-of-run callback of this job
                    outcomes[i] = run.fail(exc)
            if not live:
                break
            for run in live.values():
                run.ctx.optimizer.zero_grad(set_to_none=True)
            torch.stack([run.loss for run in live.values()]).sum().backward()  # type: ignore[misc]
            for i, run in list(live.items()):
                try:
                    run.update()
                except PACK_STOPS:
                    raise
                except Exception as exc:  # noqa: BLE001 - this job's callback or optimizer
                    outcomes[i] = live.pop(i).fail(exc)
    except BaseException as exc:
        for i, run in live.items():
            outcomes[i] = run.fail(exc)
        if isinstance(exc, PACK_STOPS):
            raise
    return [o if o is not None else RuntimeError("job never ran") for o in outcomes]


def _forward(model: FeatureModel, live: Mapping[int, _Run]) -> dict[int, Exception]:
    """One forward of every live job's views, batched by view shape; each job scores its rows.

    Returns the jobs that failed (their error); an error of the shared forward pass itself
    (out of memory, a layer that breaks) is raised, since it is every job's.
    """
    failed: dict[int, Exception] = {}
    drawn: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for i, run in live.items():
        try:
            drawn[i] = run.views()
        except PACK_STOPS:
            raise
        except Exception as exc:  # noqa: BLE001 - this job's param or transforms
            failed[i] = exc
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (_, views) in drawn.items():
        groups.setdefault((tuple(views.shape[1:]), views.dtype), []).append(i)
    for members in groups.values():
        layers = frozenset().union(*(live[i].ctx.objective.layers for i in members))
        views = [drawn[i][1] for i in members]
        acts = model(views[0] if len(views) == 1 else torch.cat(views), layers)
        layouts = getattr(acts, "layouts", {})
        start = 0
        for i, rows in zip(members, (v.shape[0] for v in views)):
            mine = LayerMap({k: acts[k][start : start + rows] for k in live[i].ctx.objective.layers}, layouts)
            start += rows
            try:
                live[i].score(drawn[i][0], mine)
            except PACK_STOPS:
                raise
            except Exception as exc:  # noqa: BLE001 - this job's objective, regularizers or callbacks
                failed[i] = exc
    return failed


def score_views(objective: Objective, acts: Mapping[str, torch.Tensor], batch: int) -> torch.Tensor:
    """The objective per image ``[batch]``; with several views per image, the mean over views.

    Transforms that make views (``transforms.crops``) lay them out view-major (view ``k`` of
    image ``b`` is row ``k * batch + b``), so each block of ``batch`` rows is scored as one
    whole batch: objectives that pick a batch element or compare images see a batch.
    """
    rows = next(iter(acts.values())).shape[0]
    if rows == batch:
        return objective(acts)
    layouts = getattr(acts, "layouts", {})
    blocks = [LayerMap({k: v[i : i + batch] for k, v in acts.items()}, layouts) for i in range(0, rows, batch)]
    return torch.stack([objective(block) for block in blocks]).mean(0)


def loop_state(ctx: RenderContext, step: int) -> dict[str, Any]:
    """The loop's whole state after ``step`` updates, as plain tensors and containers.

    Enough to continue to the same bytes: parameter, optimizer moments, the generator that
    drives every random transform, and the metrics so far (:func:`restore` puts it back).
    """
    return {
        "format": STATE_FORMAT,
        "step": step,
        "steps": ctx.steps,
        "param": ctx.param.state_dict(),
        "optimizer": ctx.optimizer.state_dict(),
        "generator": ctx.generator.get_state(),
        "history": [dict(h) for h in ctx.history],
    }


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint without running any code from it (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip and I/O errors all mean the same to the user
        raise CheckpointError(f"{path} is not a readable featviz checkpoint ({type(exc).__name__}: {exc}); delete it to start the run over") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} has checkpoint format {found!r}, this featviz writes {STATE_FORMAT}; delete it to start the run over")
    return state


def restore(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any], param: ImageParam, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> tuple[int, list[dict[str, float]]]:
    """Put a saved state back; returns ``(step, history)`` for the loop to continue from."""
    state = checkpoint if isinstance(checkpoint, Mapping) else load_state(checkpoint)
    try:
        param.load_state_dict(state["param"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        return int(state["step"]), [dict(h) for h in state["history"]]
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint does not fit this run ({type(exc).__name__}: {exc}); delete it to start over, or rerun the config that wrote it") from exc
