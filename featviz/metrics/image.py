"""Metrics of an image alone: frequency content, spectral slope, colour and contrast, total variation, convergence speed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from featviz.errors import ConfigError
from featviz.ops import frequency_radius, power_spectrum, radial_power, total_variation


def spectral_slope(images: torch.Tensor, min_bin: int = 2) -> torch.Tensor:
    """Least-squares slope of log power against log frequency, per image: ``[B]``.

    Power falls roughly as ``1/f**2`` in natural scenes (slope -2; compressed or defocused
    photos fall faster); white noise is flat (slope 0). Bins below ``min_bin`` are left out because the window spreads the lowest
    frequencies into each other.
    """
    freqs, power = radial_power(images)
    if freqs.numel() - (min_bin - 1) < 2:
        raise ConfigError(f"image of {images.shape[-1]} px is too small for a spectral slope; render at param.size >= 8")
    lf = freqs[min_bin - 1 :].log()
    lp = power[:, min_bin - 1 :].clamp_min(1e-20).log()
    lf_c = lf - lf.mean()
    return (lp - lp.mean(dim=1, keepdim=True)) @ lf_c / (lf_c @ lf_c)


def check_cutoff(cutoff: float) -> None:
    if not 0 < cutoff < 0.5 * math.sqrt(2):
        raise ConfigError(f"metrics.hf_cutoff={cutoff} must be in (0, 0.707) cycles per pixel (0.25 = half Nyquist)")


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Fraction of an image's (non-DC) power above ``cutoff`` cycles per pixel: ``[B]``.

    With the default half-Nyquist cut-off, white noise scores ``1 - pi * 0.25**2 = 0.80``
    (the share of the frequency square outside the circle) and natural photos score a few
    per cent.
    """
    check_cutoff(cutoff)
    p = power_spectrum(images)
    r = frequency_radius(*p.shape[-2:], p.device)
    total = p.flatten(1).sum(1)
    high = (p * (r > cutoff)).flatten(1).sum(1)
    return torch.where(total > 0, high / total.clamp_min(1e-30), torch.zeros_like(total))


#: Rec. 601 luma weights (PIL's ``convert("L")``): the luminance of :func:`rms_contrast`.
LUMA = (0.299, 0.587, 0.114)


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk's (2003) colourfulness of RGB images in [0, 1], on their 0-255 scale: ``[B]``.

    ``rg = R - G``, ``yb = (R + G) / 2 - B``, ``M = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)``.
    Grey images score 0; the authors' survey calls about 33 "moderately", 45 "averagely", 59
    "quite" and 82+ "highly colourful". Differentiable (the vivid prior pushes on it); a
    small epsilon keeps the square roots' gradient finite on a grey image.
    """
    rgb = images[:, :3].float() * 255.0
    rg = rgb[:, 0] - rgb[:, 1]
    yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    spread = (rg.flatten(1).var(1, unbiased=False) + yb.flatten(1).var(1, unbiased=False) + 1e-12).sqrt()
    offset = (rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2 + 1e-12).sqrt()
    return spread + 0.3 * offset


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` Rec. 601 luma of RGB images (the only channel of a grayscale one)."""
    if images.shape[1] < 3:
        return images[:, 0].float()
    weights = torch.tensor(LUMA, device=images.device, dtype=torch.float32)
    return torch.einsum("bchw,c->bhw", images[:, :3].float(), weights)


def rms_contrast(images: torch.Tensor) -> torch.Tensor:
    """RMS contrast, the standard deviation of the luminance in [0, 1]: ``[B]`` (0 for a constant image)."""
    return luminance(images).flatten(1).std(1, unbiased=False)


def mean_saturation(images: torch.Tensor) -> torch.Tensor:
    """Mean HSV saturation ``(max - min) / max`` over the pixels (0 where ``max`` is 0): ``[B]``."""
    rgb = images[:, :3].float()
    high, low = rgb.amax(1), rgb.amin(1)
    sat = torch.where(high > 0, (high - low) / high.clamp_min(1e-12), torch.zeros_like(high))
    return sat.flatten(1).mean(1)


def colour_metrics(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image ``[B]``: ``rms_contrast``, and for RGB images ``colourfulness`` and ``saturation``."""
    out = {"rms_contrast": rms_contrast(images)}
    if images.shape[1] >= 3:
        out.update(colourfulness=colourfulness(images), saturation=mean_saturation(images))
    return out


def check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ConfigError(f"metrics.progress_fraction={fraction} must be in (0, 1]")


def steps_to_fraction(history: Sequence[Mapping[str, float]], fraction: float = 0.9, key: str = "objective") -> float:
    """First recorded step at which ``key`` covered ``fraction`` of its way from start to end.

    "90 % of the final objective" read literally breaks when the objective starts above
    zero or ends below it, so the threshold is ``start + fraction * (final - start)``, which
    is the literal reading when the start is 0. NaN when the run made no progress. The
    resolution is the run's ``log_every``.
    """
    check_fraction(fraction)
    if not history:
        return math.nan
    start, final = history[0][key], history[-1][key]
    if not final > start:
        return math.nan
    threshold = start + fraction * (final - start)
    return float(next(h["step"] for h in history if h[key] >= threshold))


def image_metrics(images: torch.Tensor, hf_cutoff: float = 0.25) -> dict[str, float]:
    """The model-free metrics of a batch of final images, averaged over the batch.

    ``colourfulness`` and ``saturation`` only for RGB images (a grayscale one has no colour).
    """
    images = images.detach()
    return {
        "hf_share": float(high_frequency_share(images, hf_cutoff).mean()),
        "spectral_slope": float(spectral_slope(images).mean()),
        "tv": float(total_variation(images.float()).mean()),
        **{k: float(v.mean()) for k, v in colour_metrics(images).items()},
    }
