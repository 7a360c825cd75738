"""Vivid MACO: MACO's phase plus learnable gains around the natural spectrum and a prior towards photo statistics.

MACO (:class:`~featviz.params.maco.MacoImage`) fixes every frequency's magnitude to the
average spectrum of photos and the mean colour to grey, so every image it draws has the
same colourfulness, contrast and high-frequency share whatever the class: naturalness set
by construction, not found. This parameterization lets the optimizer move those within
what photos show:

* a gain per colour channel (of the decorrelated space) and per frequency band around the
  natural spectrum, ``exp(log(max_gain) * tanh(g))``, interpolated linearly in log frequency
  between ``bands`` log-spaced centres, so the spectrum's amplitude and tilt per colour can
  change by at most ``max_gain`` either way while the phase still carries the structure;
* a mean colour (the DC that MACO leaves at grey), ``max_offset * tanh(o)`` per channel;
* a prior: ``prior * sum(hinge(stat, range) / width)**2`` over the image's colourfulness
  and RMS contrast (:mod:`featviz.metrics.image`), zero inside the photos' ranges.

The prior is carried by the image itself (:class:`_AddPenalty`): its gradient is added in
the backward pass as if ``prior * penalty`` were a term of the loss, so the parameterization
works unchanged in every render loop, pack and notebook, with no regularizer to wire.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featviz.errors import ConfigError
from featviz.metrics.image import colourfulness, rms_contrast
from featviz.params.maco import MacoImage

#: The prior's ranges (docs/vivid.md; ``python benchmarks/vivid.py --photo-stats outputs/reference``): the
#: 8 colour photos of scikit-image's samples at 128 px have colourfulness 37.9-134.8 (median 39.5,
#: upper quartile 85.3) and RMS contrast 0.116-0.283 (median 0.175). Colourfulness from 45
#: (Hasler and Suesstrunk's "averagely colourful") to the upper quartile; contrast from the median to the most.
PHOTO_COLOURFULNESS = (45.0, 85.3)
PHOTO_CONTRAST = (0.175, 0.283)


class _AddPenalty(torch.autograd.Function):
    """``images`` unchanged forward; backward also sends ``weight`` into ``penalty``'s graph.

    The same gradient as adding ``weight * penalty`` to the loss that ``images`` feed, given
    once per backward however many views of ``images`` the loss reads.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, images: torch.Tensor, penalty: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return images.view_as(images)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return grad, torch.full((), ctx.weight, dtype=grad.dtype, device=grad.device), None


def _check_range(name: str, values: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in values)
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise ConfigError(f"param.{name}={list(values)} must be [low, high] with 0 <= low < high")
    return low, high


def band_weights(size: int, bands: int) -> torch.Tensor:
    """``[bands, size, size//2+1]`` hat functions in log radial frequency (each bin's weights sum to 1).

    Centres are log-spaced from the lowest non-zero frequency (1 cycle per image) to the
    corner of the spectrum; the DC bin gets no weight (MACO's magnitude is zero there).
    """
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    radius = (fy**2 + fx**2).sqrt()
    low, high = math.log(1.0 / size), math.log(0.5 * math.sqrt(2))
    if bands == 1:
        weights = torch.ones(1, *radius.shape)
    else:
        position = ((radius.clamp_min(1.0 / size).log() - low) / (high - low) * (bands - 1)).clamp(0, bands - 1)
        centres = torch.arange(bands, dtype=torch.float32)[:, None, None]
        weights = (1 - (position[None] - centres).abs()).clamp_min(0)
    weights[:, 0, 0] = 0.0
    return weights


class VividMacoImage(MacoImage):
    """MACO with learnable per-band, per-colour gains, a mean colour, and a photo-statistics prior.

    With ``max_gain=1``, ``max_offset=0`` and ``prior=0`` it is :class:`MacoImage` exactly
    (same phases from the same generator). The gains and the offset start at 0 (MACO's
    spectrum, grey mean) and are stored unscaled: Adam's step of 0.05 moves a gain by at most
    about 3.5 % per step at ``max_gain=2``.

    Args:
        maco: :class:`MacoImage`'s options (``spectrum``, ``lr_scale``, ``generator``, ...).
        bands: frequency bands with their own gain (1 = one gain per colour channel).
        max_gain: the most a band's amplitude may be multiplied or divided by (>= 1).
        max_offset: the most the mean of a decorrelated channel may move from grey.
        prior: weight of the photo-statistics prior (0 = off).
        colourfulness: the photos' [low, high] range of Hasler-Suesstrunk colourfulness.
        contrast: the photos' [low, high] range of RMS luminance contrast.
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        *,
        bands: int = 6,
        max_gain: float = 2.0,
        max_offset: float = 0.25,
        prior: float = 10.0,
        colourfulness: Sequence[float] = PHOTO_COLOURFULNESS,
        contrast: Sequence[float] = PHOTO_CONTRAST,
        **maco: Any,
    ) -> None:
        super().__init__(size, batch, **maco)
        if int(bands) < 1:
            raise ConfigError(f"param.bands={bands} must be >= 1")
        if not (math.isfinite(max_gain) and max_gain >= 1):
            raise ConfigError(f"param.max_gain={max_gain} must be a finite number >= 1 (1 = MACO's spectrum, fixed)")
        if not (math.isfinite(max_offset) and max_offset >= 0):
            raise ConfigError(f"param.max_offset={max_offset} must be a finite number >= 0 (0 = a grey mean, as MACO)")
        if not (math.isfinite(prior) and prior >= 0):
            raise ConfigError(f"param.prior={prior} must be a finite weight >= 0 (0 turns it off)")
        self.log_max_gain = math.log(max_gain)
        self.max_offset = float(max_offset)
        self.prior = float(prior)
        self.colourfulness_range = _check_range("colourfulness", colourfulness)
        self.contrast_range = _check_range("contrast", contrast)
        self.register_buffer("bands", band_weights(self.size, int(bands)), persistent=False)
        self.gain = nn.Parameter(torch.zeros(self.batch, 3, int(bands)))
        self.offset = nn.Parameter(torch.zeros(self.batch, 3))

    def gains(self) -> torch.Tensor:
        """``[B, 3, H, W//2+1]``: each bin's multiplier of MACO's magnitude (1 at the start)."""
        log_gain = self.log_max_gain * torch.tanh(self.gain)
        return torch.einsum("bck,khw->bchw", log_gain, self.bands).exp()

    def field(self) -> torch.Tensor:
        """MACO's field with the gains on its spectrum and the mean colour added."""
        spec = torch.polar(self.magnitude * self.gains(), self.hermitian_phase())
        t = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho")
        return t + self.max_offset * torch.tanh(self.offset)[..., None, None]

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        """The prior, ``[B]``: squared distance of each image's statistics outside the photos' ranges, in range widths."""
        total = torch.zeros(images.shape[0], device=images.device)
        for value, (low, high) in ((colourfulness(images), self.colourfulness_range), (rms_contrast(images), self.contrast_range)):
            total = total + (((low - value).clamp_min(0) + (value - high).clamp_min(0)) / (high - low)) ** 2
        return total

    def forward(self) -> torch.Tensor:
        images = super().forward()
        if self.prior > 0 and torch.is_grad_enabled():
            images = _AddPenalty.apply(images, self.penalty(images).sum(), self.prior)
        return images
