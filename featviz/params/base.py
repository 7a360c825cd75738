"""The form every parameterization shares: an nn.Module whose forward() returns [B, C, H, W] in [0, 1].

C is 3 (RGB) unless the network reads another channel count (1 for grayscale, more for
multispectral inputs). The shared tail decorrelates colours (the ImageNet colour covariance's
square root; RGB only) and squashes to [0, 1] with a sigmoid or a clamp."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from featviz.errors import ConfigError

# Square root of the colour covariance of ImageNet, from its SVD (the constant Lucid uses).
COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)


COLOR_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


ValueRange = Literal["sigmoid", "clamp"]


def _check(size: int, batch: int) -> None:
    if int(size) < 8:
        raise ConfigError(f"param.size={size} is too small; use param.size >= 8 (128 is typical)")
    if int(batch) < 1:
        raise ConfigError(f"batch={batch} must be >= 1")


class ImageParam(nn.Module):
    """Shared tail of every parameterization: colour decorrelation and the [0, 1] squash."""

    def __init__(self, size: int, batch: int, decorrelate: bool, value_range: ValueRange, channels: int = 3) -> None:
        super().__init__()
        _check(size, batch)
        if int(channels) < 1:
            raise ConfigError(f"model.in_channels={channels} must be >= 1")
        if value_range not in ("sigmoid", "clamp"):
            raise ConfigError(f"param.value_range={value_range!r}; use 'sigmoid' or 'clamp'")
        self.size = int(size)
        self.batch = int(batch)
        self.channels = int(channels)
        # The colour covariance is ImageNet's RGB one: other channel counts stay as drawn.
        self.decorrelate = bool(decorrelate) and self.channels == 3
        self.value_range = value_range
        self.register_buffer("color", COLOR_NORMALIZED.clone(), persistent=False)

    def to_rgb(self, t: torch.Tensor) -> torch.Tensor:
        """Map unconstrained ``[B, C, H, W]`` values to valid images (RGB decorrelated when asked)."""
        if self.decorrelate:
            t = torch.einsum("bchw,dc->bdhw", t, self.color)
        if self.value_range == "sigmoid":
            return torch.sigmoid(t)
        return (t + 0.5).clamp(0.0, 1.0)


def check_lr_scale(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"param.lr_scale={value} must be a finite number > 0 (1.0 leaves the optimizer's step as it is)")
    return float(value)
