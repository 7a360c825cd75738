"""What changes with the step: learning-rate schedules, shrinking crops, redirected ReLUs.

Each is a callback that sets its value from the step number alone, before the step's forward
pass (at ``on_start`` for the first, ``on_after_update`` for the rest), so a resumed run sets
the same values as the run it continues and nothing extra goes into the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from featviz.callbacks import Callback, ClosingCallback, RenderContext
from featviz.errors import ConfigError
from featviz.models.redirected import Redirection
from featviz.transforms import RandomCrops, Transform

SCHEDULES = ("none", "cosine", "step")


class StepSchedule(Callback):
    """A callback that calls :meth:`apply` with the number of updates done before each forward pass."""

    def apply(self, ctx: RenderContext, step: int) -> None:
        raise NotImplementedError

    def on_start(self, ctx: RenderContext) -> None:
        self.apply(ctx, ctx.start_step)

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        self.apply(ctx, step)


class LRSchedule(StepSchedule):
    """The learning rate as ``lr * factor(step)``: linear warm-up, then constant, cosine or step decay.

    Why: a large step early finds the layout, a small one late removes the noise the large
    step leaves (the render's last images are what is scored). ``warmup`` updates ramp
    linearly from ``lr / warmup`` to ``lr``; ``cosine`` then falls to ``lr * lr_min`` at the
    last update, ``step`` multiplies by ``gamma`` every ``every`` updates (default: a quarter
    of the run after the warm-up). The base rate of each parameter group is kept in the group
    (``base_lr``), so the optimizer's checkpoint carries it.
    """

    def __init__(self, kind: str = "none", warmup: int = 0, lr_min: float = 0.0, every: int | None = None, gamma: float = 0.5) -> None:
        if kind not in SCHEDULES:
            raise ConfigError(f"optimizer.schedule={kind!r}; use one of {', '.join(SCHEDULES)}")
        if int(warmup) < 0:
            raise ConfigError(f"optimizer.warmup={warmup} must be >= 0 updates")
        if not (math.isfinite(lr_min) and 0 <= lr_min <= 1):
            raise ConfigError(f"optimizer.lr_min={lr_min} must be a fraction of optimizer.lr in [0, 1]")
        if every is not None and int(every) < 1:
            raise ConfigError(f"optimizer.step_every={every} must be >= 1 update (null: a quarter of the run)")
        if not (math.isfinite(gamma) and 0 < gamma <= 1):
            raise ConfigError(f"optimizer.step_gamma={gamma} must be in (0, 1]")
        self.kind, self.warmup, self.lr_min, self.every, self.gamma = kind, int(warmup), float(lr_min), every, float(gamma)

    def factor(self, step: int, steps: int) -> float:
        """The multiplier of the base rate for update number ``step`` (0-based) of ``steps``."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        done, left = step - self.warmup, max(steps - self.warmup, 1)
        if self.kind == "cosine":
            return self.lr_min + (1 - self.lr_min) * 0.5 * (1 + math.cos(math.pi * min(done / left, 1.0)))
        if self.kind == "step":
            return self.gamma ** (done // (int(self.every) if self.every else max(left // 4, 1)))
        return 1.0

    def apply(self, ctx: RenderContext, step: int) -> None:
        for group in ctx.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * self.factor(step, ctx.steps)


class CropSchedule(StepSchedule):
    """Moves every :class:`RandomCrops` of the transforms from its ``size`` range to its ``end`` range."""

    def __init__(self, crops: Sequence[RandomCrops]) -> None:
        self.crops = list(crops)

    @classmethod
    def of(cls, transforms: Transform) -> CropSchedule | None:
        """The schedule for ``transforms``' shrinking crops, or None when none shrink."""
        stages = getattr(transforms, "transforms", [transforms])
        shrinking = [t for t in stages if isinstance(t, RandomCrops) and t.end is not None]
        return cls(shrinking) if shrinking else None

    def apply(self, ctx: RenderContext, step: int) -> None:
        for crops in self.crops:
            crops.progress = step / ctx.steps


class RedirectedReLU(StepSchedule, ClosingCallback):
    """Redirected ReLU/ReLU6 gradients (:mod:`featviz.models.redirected`) for the first ``steps`` updates.

    The forward pass is unchanged throughout; from update ``steps`` on the network is exact.
    The hooks come off however the run ends, so the model is left as it was given. The jobs
    of a pack share one network, so they share one redirection too (:data:`_HOLDERS`): it is
    on while any of them is below its ``steps``, and is put on the network once, not once per job.
    """

    def __init__(self, steps: int) -> None:
        if int(steps) < 1:
            raise ConfigError(f"model.redirected_relu={steps} must be >= 1 steps (0 in the config turns it off)")
        self.steps = int(steps)
        self._net: object | None = None  # the network this job holds the redirection of

    def apply(self, ctx: RenderContext, step: int) -> None:
        if step < self.steps and self._net is None:
            self._net = ctx.model.net
            redirection, holders = _HOLDERS.get(id(self._net), (None, 0))
            _HOLDERS[id(self._net)] = (redirection or Redirection(ctx.model.net), holders + 1)
        elif step >= self.steps:
            self.close()

    def close(self) -> None:
        if self._net is None:
            return
        redirection, holders = _HOLDERS.pop(id(self._net))
        if holders > 1:
            _HOLDERS[id(self._net)] = (redirection, holders - 1)
        else:
            redirection.remove()
        self._net = None


#: The redirection on each network (by ``id``) and how many jobs hold it.
_HOLDERS: dict[int, tuple[Redirection, int]] = {}
