"""Regularizers: penalties on the image that push towards natural-looking structure.

Each regularizer has a ``weight`` (0 = off, so one sweep spans "off" to "strong") and
``penalty(images) -> [B]`` which the render loop adds, times the weight, to the loss.
They are the "frequency penalization" family of the article; transformation robustness
lives in :mod:`featviz.transforms`, preconditioning in :mod:`featviz.params` and
:mod:`featviz.preconditioning` (which also holds the blur that edits the image parameter
every N steps, since that acts on the optimizer's state, not on the loss).
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
    """Separable Gaussian blur with reflected borders (replicated when the kernel outgrows the image)."""
    k = gaussian_kernel1d(sigma).to(images)
    r = k.numel() // 2
    c = images.shape[1]
    x = F.pad(images, [r, r, r, r], mode="reflect" if r < min(images.shape[-2:]) else "replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class FilterPull(Regularizer):
    """Pull the image towards a filtered copy of itself, one small step per update.

    The penalty ``0.5 * ||x - stopgrad(filter(x))||^2`` (per pixel, summed over colours)
    has gradient ``x - filter(x)``, so each optimizer step moves the image towards its
    filtered version: "filter every step" expressed as a loss, which works with any
    parameterization. Subclasses say which filter.
    """

    def filtered(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        target = self.filtered(images.detach())
        return 0.5 * ((images - target) ** 2).flatten(1).sum(1) / images[0, 0].numel()


class Blur(FilterPull):
    """Pull the image towards its Gaussian-blurred copy (Nguyen et al. 2015)."""

    name = "blur"

    def __init__(self, weight: float, sigma: float = 1.0) -> None:
        super().__init__(weight)
        if not math.isfinite(sigma) or sigma <= 0:
            raise ConfigError(f"regularizer.blur_sigma={sigma} must be > 0")
        self.sigma = float(sigma)

    def filtered(self, images: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(images, self.sigma)


def bilateral_filter(images: torch.Tensor, sigma: float, range_sigma: float) -> torch.Tensor:
    """Edge-preserving blur: neighbours are weighted by distance *and* colour similarity.

    Each pixel becomes the mean of its ``(2r+1)^2`` window (``r = ceil(2 * sigma)``)
    weighted by ``exp(-d^2 / 2 sigma^2) * exp(-|c - c0|^2 / 2 range_sigma^2)``, where
    ``|c - c0|`` is the RGB distance to the centre pixel. Across an edge the colour term is
    near zero, so edges stay sharp while flat regions are smoothed (Tyka 2016 used this to
    keep edges that a Gaussian blur would wash out).
    """
    h, w = images.shape[-2:]
    r = max(1, int(math.ceil(2 * sigma)))
    # Reflect padding needs r < side; replicate works for any side and only affects borders.
    padded = F.pad(images, [r, r, r, r], mode="reflect" if r < min(h, w) else "replicate")
    num = torch.zeros_like(images)
    den = torch.zeros_like(images[:, :1])
    # One shifted view per window offset: about half the time of one unfolded 5-D tensor.
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = padded[..., r + dy : r + dy + h, r + dx : r + dx + w]
            colour2 = ((shifted - images) ** 2).sum(1, keepdim=True)
            weight = torch.exp(-0.5 * (dx * dx + dy * dy) / sigma**2 - 0.5 * colour2 / range_sigma**2)
            num += weight * shifted
            den += weight
    return num / den


class Bilateral(FilterPull):
    """Pull the image towards its bilateral-filtered copy: like :class:`Blur`, but edges survive.

    ``sigma`` is the spatial scale in pixels, ``range_sigma`` the colour difference (on the
    [0, 1] scale) beyond which neighbours stop counting; as ``range_sigma`` grows the filter
    becomes a Gaussian blur.
    """

    name = "bilateral"

    def __init__(self, weight: float, sigma: float = 1.0, range_sigma: float = 0.1) -> None:
        super().__init__(weight)
        if not math.isfinite(sigma) or sigma <= 0:
            raise ConfigError(f"regularizer.bilateral_sigma={sigma} must be > 0 pixels (1.0 is typical)")
        if not math.isfinite(range_sigma) or range_sigma <= 0:
            raise ConfigError(f"regularizer.bilateral_range={range_sigma} must be > 0 (0.1 of the [0, 1] colour scale is typical)")
        self.sigma = float(sigma)
        self.range_sigma = float(range_sigma)

    def filtered(self, images: torch.Tensor) -> torch.Tensor:
        return bilateral_filter(images, self.sigma, self.range_sigma)


def build_regularizers(
    l1: float = 0.0,
    l1_center: float = 0.5,
    tv: float = 0.0,
    blur: float = 0.0,
    blur_sigma: float = 1.0,
    bilateral: float = 0.0,
    bilateral_sigma: float = 1.0,
    bilateral_range: float = 0.1,
) -> list[Regularizer]:
    """The active regularizers (weights of 0 are left out)."""
    regs: list[Regularizer] = [
        L1(l1, l1_center),
        TotalVariation(tv),
        Blur(blur, blur_sigma),
        Bilateral(bilateral, bilateral_sigma, bilateral_range),
    ]
    return [r for r in regs if r.weight > 0]
