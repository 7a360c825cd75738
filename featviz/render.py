"""The render loop: optimize a parameterized image so an objective goes up.

``render(model, objective, ...)`` is the whole library in one call and needs neither Hydra
nor W&B. Everything that watches a run (files, progress bar, W&B, checkpoints) is a
:class:`Callback`; the loop only knows that interface.

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
from featviz.errors import CheckpointError, ConfigError, NonFiniteLossError
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
    """Optimize ``param``'s images to maximize ``objective`` on ``model``.

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
    if int(steps) < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    if int(log_every) < 1:
        raise ConfigError(f"log_every={log_every} must be >= 1")
    steps = int(steps)
    dev = resolve_device(device)
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    if param is None:
        param = FFTImage(128, generator=generator)
    if transforms is None:
        transforms = Compose([])
    elif not isinstance(transforms, Transform):
        transforms = Compose(list(transforms))
    model = model.to(dev)
    param = param.to(dev)
    try:
        opt = (optimizer or _default_optimizer)(param.parameters())
    except ValueError as exc:  # torch.optim validates its own arguments
        raise ConfigError(f"the optimizer rejected its settings ({exc}); check optimizer.lr and the other optimizer.* values") from exc
    check_lr(opt)

    # Validate layer names and unit indices on the shapes the model will actually see.
    with torch.no_grad():
        probe = transforms(param(), torch.Generator().manual_seed(0))
    model.check_layers(objective.layers)
    shapes = model.layer_shapes(tuple(probe.shape[-2:]), sorted(objective.layers))
    objective.validate(shapes, param.batch)

    snaps = frozenset(s for s in map(_snapshot_step, snapshots) if 0 <= s <= steps)
    ctx = RenderContext(model, objective, param, opt, transforms, generator, steps, snaps, dev)
    if resume_from is not None:
        from featviz.render import restore

        ctx.start_step, ctx.history = restore(resume_from, param, opt, generator)
        if ctx.start_step > steps:
            raise ConfigError(f"the checkpoint is at step {ctx.start_step}, past steps={steps}; resume with the steps it was made with")
    for cb in callbacks:
        cb.on_start(ctx)

    history = ctx.history
    record: StepRecord | None = None
    step = ctx.start_step
    t0 = time.perf_counter()
    try:
        while True:
            images = param()
            acts = model(transforms(images, generator), objective.layers)
            per_image = score_views(objective, acts, images.shape[0])
            score = per_image.mean()
            terms = {r.name: r.weight * r.penalty(images).mean() for r in regularizers}
            loss = -score + sum(terms.values(), torch.zeros((), device=dev))
            if step % log_every == 0 or step == steps or step in snaps:
                metrics = {"objective": float(score.detach()), "loss": float(loss.detach())}
                metrics.update({f"reg/{k}": float(v.detach()) for k, v in terms.items()})
                metrics["lr"] = float(opt.param_groups[0].get("lr", float("nan")))
                if not bool(torch.isfinite(images).all()):
                    raise NonFiniteLossError(
                        f"the image became non-finite (NaN/Inf) at step {step}; check param.sd and lower optimizer.lr "
                        f"(snapshots so far are kept)"
                    )
                if not math.isfinite(metrics["loss"]):
                    raise NonFiniteLossError(
                        f"loss became {metrics['loss']} at step {step}; lower optimizer.lr or the regularizer weights "
                        f"(snapshots so far are kept)"
                    )
                record = StepRecord(step, images.detach(), metrics, per_image.detach().tolist(), step in snaps)
                history.append({"step": step, **metrics})
                for cb in callbacks:
                    cb.on_step(ctx, record)
            if step >= steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for cb in callbacks:
                cb.on_after_update(ctx, step)
    except BaseException as exc:
        for cb in callbacks:
            cb.on_error(ctx, exc, step)
        raise
    wall = time.perf_counter() - t0
    assert record is not None
    objs = [h["objective"] for h in history]
    final = {
        "objective": record.metrics["objective"],
        "objective_max": max(objs),
        "loss": record.metrics["loss"],
        "wall_time_s": wall,
        "steps_per_s": (steps - ctx.start_step) / wall if wall > 0 else float("nan"),
    }
    result = RenderResult(record.images.cpu(), history, steps, wall, final)
    for cb in callbacks:
        cb.on_end(ctx, result)
    return result


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
