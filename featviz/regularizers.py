"""Regularizers: penalties on the image that push towards natural-looking structure.

Each regularizer has a ``weight`` (0 = off, so one sweep spans "off" to "strong") and
``penalty(images) -> [B]`` which the render loop adds, times the weight, to the loss.
They are the "frequency penalization" family of the article; transformation robustness
lives in :mod:`featviz.transforms`, preconditioning in :mod:`featviz.params`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


class L1(Regularizer):
    """Mean absolute distance from a centre colour (0.5 = grey): sparse, low-contrast images."""

    name = "l1"

    def __init__(self, weight: float, center: float = 0.5) -> None:
        super().__init__(weight)
        self.center = float(center)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.center).abs().flatten(1).mean(1)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image: mean absolute difference of neighbours."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


class TotalVariation(Regularizer):
    """Penalize differences between neighbouring pixels (Mahendran & Vedaldi 2015)."""

    name = "tv"

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return total_variation(images)


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders."""
    k = gaussian_kernel1d(sigma).to(images)
    r = k.numel() // 2
    c = images.shape[1]
    x = F.pad(images, [r, r, r, r], mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class Blur(Regularizer):
    """Pull the image towards its own blurred copy each step (Nguyen et al. 2015).

    The penalty ``0.5 * ||x - stopgrad(blur(x))||^2`` has gradient ``x - blur(x)``, so one
    optimizer step moves the image towards its blurred version, which is "blur every step"
    expressed as a loss that works with any parameterization.
    """

    name = "blur"

    def __init__(self, weight: float, sigma: float = 1.0) -> None:
        super().__init__(weight)
        if sigma <= 0:
            raise ConfigError(f"regularizer.blur_sigma={sigma} must be > 0")
        self.sigma = float(sigma)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        target = gaussian_blur(images.detach(), self.sigma)
        return 0.5 * ((images - target) ** 2).flatten(1).sum(1) / images[0, 0].numel()


def build_regularizers(l1: float = 0.0, l1_center: float = 0.5, tv: float = 0.0, blur: float = 0.0, blur_sigma: float = 1.0) -> list[Regularizer]:
    """The active regularizers (weights of 0 are left out)."""
    regs: list[Regularizer] = [L1(l1, l1_center), TotalVariation(tv), Blur(blur, blur_sigma)]
    return [r for r in regs if r.weight > 0]
