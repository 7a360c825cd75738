"""The render loop's watcher interface: Callback and what it sees (RenderContext, StepRecord, RenderResult).

Files, progress, checkpoints, metrics, preconditioners and W&B are all callbacks; the loop
in featviz.render knows only this interface."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageShow

from featviz.images import grid, to_uint8

from featviz.models.feature_model import FeatureModel
from featviz.objectives.base import Objective
from featviz.params.base import ImageParam
from featviz.transforms import Compose, Resize, Transform


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

    def picture(self, min_side: int = 256) -> Image.Image:
        """The images as one picture (a row of tiles for a batch), enlarged by a whole factor
        to at least ``min_side`` px so a 64 px render is not a dot in a notebook."""
        tiles = grid(self.images) if self.images.shape[0] > 1 else self.images[0]
        pil = Image.fromarray(to_uint8(tiles))
        factor = max(1, -(-min_side // max(1, min(self.images.shape[-2:]))))
        return pil.resize((pil.width * factor, pil.height * factor), Image.NEAREST) if factor > 1 else pil

    def show(self) -> Path | None:
        """Display the images below a notebook cell; elsewhere write them and open a viewer.

        Why not IPython's ``display`` everywhere: outside a kernel it prints the image's repr.
        Outside a notebook the PNG goes to a temporary file whose path is printed (and
        returned), so a headless session still gets the picture.
        """
        shell = _ipython_shell()
        if shell is not None and type(shell).__name__ != "TerminalInteractiveShell":
            from IPython.display import display

            display(self.picture())
            return None
        handle, name = tempfile.mkstemp(prefix="featviz-", suffix=".png")
        os.close(handle)
        path = Path(name)
        picture = self.picture()
        picture.save(path)
        opened = ImageShow.show(picture) if _has_display() else False
        print(f"featviz: images written to {path}" + ("" if opened else " (no image viewer here: open that file)"), file=sys.stderr)
        return path

    def _repr_png_(self) -> bytes:
        """Jupyter's rich display: a result at the end of a cell shows as its images."""
        buffer = io.BytesIO()
        self.picture().save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        last = self.history[-1].get("objective", float("nan")) if self.history else float("nan")
        return f"RenderResult(images={tuple(self.images.shape)}, steps={self.steps}, objective={last:.4g}, {self.steps_per_s:.3g} steps/s)"


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

    def clean_input(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` as the network sees them in this run with every random transform left out:
        resized when the run's transforms end in a resize (``transforms.resize=true``), else
        as they are, so a run that optimizes 128 px images is measured at 128 px."""
        stages = self.transforms.transforms if isinstance(self.transforms, Compose) else [self.transforms]
        sizes = [t.size for t in stages if isinstance(t, Resize)]
        if sizes and tuple(images.shape[-2:]) != (sizes[-1], sizes[-1]):
            images = torch.nn.functional.interpolate(images, size=(sizes[-1], sizes[-1]), mode="bilinear", align_corners=False)
        return images

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        """Objective score of ``images`` untransformed, in the run's own setting (:meth:`clean_input`)."""
        return self.objective(self.model(self.clean_input(images), self.objective.layers))


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


def _ipython_shell() -> Any:
    """The running IPython shell, None in a plain interpreter (or without IPython)."""
    module = sys.modules.get("IPython")
    return module.get_ipython() if module is not None else None


def _has_display() -> bool:
    """Whether a desktop can show a window: macOS and Windows always, X11/Wayland by their variables."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
