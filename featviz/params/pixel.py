"""One free value per pixel: the plain-gradient baseline of the article."""

from __future__ import annotations

import torch
from torch import nn
from featviz.params.base import ImageParam, ValueRange


class PixelImage(ImageParam):
    """One free value per pixel and channel: the plain (L2) steepest-descent baseline."""

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        sd: float = 0.01,
        decorrelate: bool = False,
        value_range: ValueRange = "sigmoid",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(size, batch, decorrelate, value_range)
        init = torch.randn(self.batch, 3, self.size, self.size, generator=generator) * sd
        self.pixels = nn.Parameter(init)

    def forward(self) -> torch.Tensor:
        return self.to_rgb(self.pixels)
