"""Pure tensor helpers shared by parameterizations, regularizers, metrics and tools.

Each function maps tensors to tensors and holds no state: Gaussian blur, total variation,
the bilateral filter, Fourier frequency grids and power spectra, Laplacian band splits."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rfft2d_freqs(h: int, w: int) -> torch.Tensor:
    """Frequency magnitude of each bin of a real 2-D FFT of an ``h x w`` image."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image: mean absolute difference of neighbours."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


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


def _down(x: torch.Tensor) -> torch.Tensor:
    return gaussian_blur(x, 1.0)[..., ::2, ::2]


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def laplacian_split(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Split ``[B, C, H, W]`` into ``levels`` band-pass images, finest first, coarsest last.

    Each band is ``x - up(down(x))`` at its resolution; the last is the remaining low-pass
    image. :func:`laplacian_merge` inverts it exactly.
    """
    bands = []
    for _ in range(levels - 1):
        low = _down(x)
        bands.append(x - _up(low, x.shape[-2:]))
        x = low
    bands.append(x)
    return bands


def laplacian_merge(bands: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`laplacian_split`."""
    x = bands[-1]
    for band in reversed(bands[:-1]):
        x = band + _up(x, band.shape[-2:])
    return x


def frequency_radius(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Radial frequency of each bin of a full 2-D FFT, in cycles per pixel (Nyquist = 0.5)."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.fftfreq(w, device=device)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Power of each 2-D frequency bin, averaged over colour channels: ``[B, H, W]``.

    Each channel has its mean removed and is multiplied by a 2-D Hann window first. Without
    the window, the jump between opposite borders of a non-periodic image (every pixel-
    parameterized one) adds a cross of spurious 1/f^2 power; FFT-parameterized images are
    periodic and would not get it, so the comparison would be biased. The windowed image is
    re-centred so no DC power leaks into the lowest bins. Channels are averaged in power,
    not converted to luminance first, so chromatic high-frequency noise still counts.
    """
    x = images.detach().float()
    h, w = x.shape[-2:]
    win = torch.hann_window(h, periodic=False, device=x.device)[:, None] * torch.hann_window(w, periodic=False, device=x.device)[None, :]
    x = (x - x.mean(dim=(-2, -1), keepdim=True)) * win
    x = x - x.sum(dim=(-2, -1), keepdim=True) / win.sum() * win
    return torch.fft.fft2(x).abs().pow(2).mean(dim=1)


def radial_power(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum: ``(freqs [K], power [B, K])``.

    Bin ``k`` (1..min(H, W)/2) holds the mean power of the FFT bins whose radius rounds to
    ``k / min(H, W)`` cycles per pixel; the corners past Nyquist are left out because only
    part of each ring is sampled there.
    """
    p = power_spectrum(images)
    h, w = p.shape[-2:]
    n = min(h, w)
    k = torch.round(frequency_radius(h, w, p.device) * n).long().flatten()
    nbins = int(k.max()) + 1
    sums = torch.zeros(p.shape[0], nbins, device=p.device).index_add_(1, k, p.flatten(1))
    counts = torch.zeros(nbins, device=p.device).index_add_(0, k, torch.ones_like(k, dtype=torch.float32))
    top = n // 2
    freqs = torch.arange(1, top + 1, device=p.device, dtype=torch.float32) / n
    return freqs, (sums / counts)[:, 1 : top + 1]
