"""Laplacian pyramid images: coarse levels move as fast as fine ones, so the layout forms first."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from featviz.errors import ConfigError
from featviz.params.base import ImageParam, ValueRange


class LaplacianPyramidImage(ImageParam):
    """Images as a sum of ``levels`` tensors at sides ``size / 2**k``, upsampled bilinearly.

    A pixel parameterization gives every frequency its own free value, and the gradient
    of a network is dominated by high frequencies. Here a coarse value covers ``4**k``
    pixels; with Adam each moves about ``lr`` per step, so the coarse layout moves as
    fast as the fine detail and the picture is built from coarse to fine.
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        sd: float = 0.01,
        levels: int = 4,
        decorrelate: bool = True,
        value_range: ValueRange = "sigmoid",
        generator: torch.Generator | None = None,
        channels: int = 3,
    ) -> None:
        super().__init__(size, batch, decorrelate, value_range, channels)
        levels = int(levels)
        if not 1 <= levels or self.size // 2 ** (levels - 1) < 1:
            raise ConfigError(f"param.levels={levels} must be in 1..{int(math.log2(self.size)) + 1} for param.size={self.size}")
        sides = [max(1, math.ceil(self.size / 2**k)) for k in range(levels)]
        self.levels = nn.ParameterList(nn.Parameter(torch.randn(self.batch, self.channels, s, s, generator=generator) * sd) for s in sides)

    def forward(self) -> torch.Tensor:
        total = self.levels[0]
        for level in self.levels[1:]:
            total = total + F.interpolate(level, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.to_rgb(total)
