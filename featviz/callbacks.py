"""The render loop's watcher interface: Callback and what it sees (RenderContext, StepRecord, RenderResult).

Files, progress, checkpoints, metrics, preconditioners and W&B are all callbacks; the loop
in featviz.render knows only this interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from featviz.models.feature_model import FeatureModel
from featviz.objectives.base import Objective
from featviz.params.base import ImageParam
from featviz.transforms import Transform


@dataclass
class StepRecord:
    """What callbacks see at a recorded step."""

    step: int
    images: torch.Tensor  # detached, on the run's device, [B, 3, H, W] in [0, 1]
    metrics: dict[str, float]  # objective, loss, each weighted regularizer term, lr
    per_image: list[float]  # objective score of each batch element
    snapshot: bool


@dataclass
class RenderResult:
    images: torch.Tensor  # final images on CPU
    history: list[dict[str, float]]
    steps: int
    wall_time: float
    final: dict[str, float]

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_time if self.wall_time > 0 else float("nan")


@dataclass
class RenderContext:
    """Everything a callback may need to look at (or, for checkpoints, restore)."""

    model: FeatureModel
    objective: Objective
    param: ImageParam
    optimizer: torch.optim.Optimizer
    transforms: Transform
    generator: torch.Generator
    steps: int
    snapshots: frozenset[int]
    device: torch.device
    start_step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # recorded metrics so far (a checkpoint saves them)

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        """Objective score of ``images`` with no transform except the resize to model input."""
        size = self.model.input_size
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return self.objective(self.model(images, self.objective.layers))


class Callback:
    """Hooks of the render loop; override what you need. Default methods do nothing."""

    def on_start(self, ctx: RenderContext) -> None: ...

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None: ...

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        """After the optimizer update that leads to ``step`` (e.g. to edit the parameter)."""

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None: ...

    def on_error(self, ctx: RenderContext, error: BaseException, step: int) -> None: ...


class ClosingCallback(Callback):
    """A callback holding something (a progress bar, a gradient hook) that must be let go
    when the run ends, however it ends: :meth:`close` runs on end and on error."""

    def close(self) -> None: ...

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        self.close()

    def on_error(self, ctx: RenderContext, error: BaseException, step: int) -> None:
        self.close()
