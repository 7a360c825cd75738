"""The form of a regularizer: a weighted penalty on the images, added to the loss."""

from __future__ import annotations

import math

import torch

from featviz.errors import ConfigError


class Regularizer:
    """A weighted penalty on the rendered images."""

    name = "regularizer"

    def __init__(self, weight: float) -> None:
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"regularizer.{self.name}={weight} must be a finite weight >= 0 (0 turns it off)")
        self.weight = float(weight)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight})"


class FilterPull(Regularizer):
    """Pull the image towards a filtered copy of itself, one small step per update.

    The penalty ``scale * 0.5 * ||x - stopgrad(filter(x))||^2`` (per pixel, summed over colours)
    has gradient ``scale * (x - filter(x))``, so each optimizer step moves the image towards its
    filtered version: "filter every step" expressed as a loss, which works with any
    parameterization. Subclasses say which filter, and the ``scale`` that makes weight 1 a
    strong pull (see :mod:`featviz.regularizers.frequency`).
    """

    scale = 1.0

    def filtered(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        target = self.filtered(images.detach())
        return self.scale * 0.5 * ((images - target) ** 2).flatten(1).sum(1) / images[0, 0].numel()
