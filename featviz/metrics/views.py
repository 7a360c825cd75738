"""Robustness: how the optimized network and an independent one score unseen random views of the image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from featviz.errors import ConfigError
from featviz.models import LOGITS, FeatureModel
from featviz.objectives.base import Objective, Offset, OnBatch, Scaled, Sum
from featviz.objectives.units import Channel, ClassLogit, Neuron
from featviz.ops import gaussian_blur


def class_targets(objective: Objective, batch: int) -> list[int | None]:
    """The ImageNet class each batch element is pushed towards, or None.

    A class term is a :class:`ClassLogit` / :class:`ClassProb`, or a neuron / channel on
    ``logits``, with a positive weight; :meth:`Objective.batch` restricts it to one image.
    An image with no class term or with several different ones has no single target.
    """
    found: list[set[int]] = [set() for _ in range(batch)]

    def walk(obj: Objective, sign: float, only: int | None) -> None:
        if isinstance(obj, Sum):
            for t in obj.terms:
                walk(t, sign, only)
        elif isinstance(obj, Scaled):
            walk(obj.inner, sign * obj.factor, only)
        elif isinstance(obj, Offset):
            walk(obj.inner, sign, only)
        elif isinstance(obj, OnBatch):
            walk(obj.inner, sign, obj.index)
        elif isinstance(obj, (ClassLogit, Neuron, Channel)) and obj.layer == LOGITS and sign > 0:
            for i in range(batch) if only is None else [only]:
                found[i].add(obj.unit)

    walk(objective, 1.0, None)
    return [next(iter(s)) if len(s) == 1 else None for s in found]


def class_scores(logits: torch.Tensor, targets: Sequence[int | None]) -> dict[str, float]:
    """Top-1, top-5 and softmax probability of each image's target class, averaged.

    Images without a target are left out; an empty dict when none has one.
    """
    idx = [i for i, t in enumerate(targets) if t is not None]
    if not idx:
        return {}
    rows = logits[idx].float()
    tgt = torch.tensor([targets[i] for i in idx], device=rows.device)
    rank = (rows > rows.gather(1, tgt[:, None])).sum(1)  # classes strictly above the target
    prob = torch.softmax(rows, dim=1).gather(1, tgt[:, None])[:, 0]
    return {
        "top1": float((rank < 1).float().mean()),
        "top5": float((rank < 5).float().mean()),
        "prob": float(prob.mean()),
    }


def _draw(generator: torch.Generator, low: float, high: float) -> float:
    return float(torch.rand((), generator=generator)) * (high - low) + low


@dataclass(frozen=True)
class UnseenViews:
    """Random views of an image made with transformations the render did not train on.

    One view: crop a square of ``crop`` x the side at a random position (a zoom of 1.11 to
    1.43 with the defaults, past the standard stack's 0.9-1.1), mirror it with probability
    1/2 when ``flip``, down-sample it to ``downscale`` x its side and back (resolution
    loss), blur it with a Gaussian of ``blur`` pixels, then resize it to the model's input.
    Natural photos keep their class through such views (tests/test_metrics.py checks one);
    patterns that exist only at the pixel scale the optimizer tuned do not.
    """

    crop: tuple[float, float] = (0.7, 0.9)
    flip: bool = True
    downscale: tuple[float, float] = (0.5, 0.8)
    blur: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        for name in ("crop", "downscale"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ConfigError(f"metrics.view_{name}={[low, high]} must satisfy 0 < low <= high <= 1")
        low, high = self.blur
        if not 0 <= low <= high:
            raise ConfigError(f"metrics.view_blur={[low, high]} must satisfy 0 <= low <= high (pixels; 0 = no blur)")

    def __call__(self, images: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
        """One view of every image in the batch (the same draw for all), ``[B, 3, size, size]``."""
        h, w = images.shape[-2:]
        side = max(2, round(_draw(generator, *self.crop) * min(h, w)))
        y = int(torch.randint(0, h - side + 1, (), generator=generator))
        x = int(torch.randint(0, w - side + 1, (), generator=generator))
        mirror = bool(torch.rand((), generator=generator) < 0.5)
        small = max(2, round(_draw(generator, *self.downscale) * side))
        sigma = _draw(generator, *self.blur)
        v = images[..., y : y + side, x : x + side]
        if self.flip and mirror:
            v = v.flip(-1)
        v = F.interpolate(v, size=(small, small), mode="bilinear", align_corners=False, antialias=True)
        v = F.interpolate(v, size=(side, side), mode="bilinear", align_corners=False)
        if sigma > 0 and side > 2 * math.ceil(3 * sigma):
            v = gaussian_blur(v, sigma)
        return F.interpolate(v, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size).clamp(0, 1)


@dataclass(frozen=True)
class ModerateViews:
    """The moderate unseen-view recipe: what a photo of the class survives without a second thought.

    One view: a random resized crop covering ``area`` of the image (a fraction, at least half
    by default) with aspect ratio in ``ratio`` (drawn log-uniformly), placed uniformly inside
    the image, mirrored with probability 1/2 when ``flip``, rotated by up to ``rotate``
    degrees either way, then resampled to the model's input in one bilinear ``grid_sample``
    (reflection fills the corners a rotation uncovers). Unlike :class:`UnseenViews` there is
    no down-sampling or blur: this asks whether the *object* is recognised from another
    framing, not whether it survives resolution loss (``transfer/moderate_*`` beside the
    harsher ``transfer/view_*``).
    """

    area: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    rotate: float = 10.0

    def __post_init__(self) -> None:
        low, high = self.area
        if not 0 < low <= high <= 1:
            raise ConfigError(f"moderate view area={[low, high]} must satisfy 0 < low <= high <= 1")
        low, high = self.ratio
        if not 0 < low <= 1 <= high:
            raise ConfigError(f"moderate view ratio={[low, high]} must satisfy 0 < low <= 1 <= high")
        if not 0 <= self.rotate <= 45:
            raise ConfigError(f"moderate view rotate={self.rotate} must be in [0, 45] degrees")

    def __call__(self, images: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
        """One view of every image in the batch (the same draw for all), ``[B, C, size, size]``."""
        area = _draw(generator, *self.area)
        ratio = math.exp(_draw(generator, math.log(self.ratio[0]), math.log(self.ratio[1])))
        width, height = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))
        cx, cy = _draw(generator, width - 1, 1 - width), _draw(generator, height - 1, 1 - height)
        mirror = -1.0 if self.flip and bool(torch.rand((), generator=generator) < 0.5) else 1.0
        angle = math.radians(_draw(generator, -self.rotate, self.rotate))
        cos, sin = math.cos(angle), math.sin(angle)
        # grid_sample's normalized coordinates: input = centre + rotation @ (crop half-sides * output).
        theta = torch.tensor([[cos * width * mirror, -sin * height, cx], [sin * width * mirror, cos * height, cy]], dtype=images.dtype)
        grid = F.affine_grid(theta.expand(images.shape[0], 2, 3).to(images.device), [images.shape[0], images.shape[1], size, size], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False).clamp(0, 1)


@torch.no_grad()
def view_metrics(
    model: FeatureModel,
    objective: Objective | None,
    images: torch.Tensor,
    views: UnseenViews | ModerateViews,
    n_views: int,
    generator: torch.Generator,
    targets: list[int | None] | None = None,
) -> dict[str, float]:
    """Scores averaged over ``n_views`` unseen views: ``objective`` (when given) and ``top1|top5|prob``.

    The class targets are the objective's unless ``targets`` names them: the render's model
    scores its own objective (``robust/*``), the eval model only the classes (``transfer/view_*``).
    """
    if targets is None:
        targets = class_targets(objective, images.shape[0]) if objective is not None else []
    has_class = any(t is not None for t in targets)
    layers = (set(objective.layers) if objective is not None else set()) | ({LOGITS} if has_class else set())
    totals: dict[str, float] = {}
    for _ in range(n_views):
        acts = model(views(images, generator, model.input_size), layers)
        scores = {"objective": float(objective(acts).mean())} if objective is not None else {}
        if has_class:
            scores.update(class_scores(acts[LOGITS], targets))
        for k, v in scores.items():
            totals[k] = totals.get(k, 0.0) + v
    return {k: v / n_views for k, v in totals.items()}


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
