"""Decorrelated Fourier images: a spectrum scaled by 1/f^decay, the article's preconditioner.

SharedFFTImage adds low-resolution components shared across the batch, for interpolation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featviz.errors import ConfigError
from featviz.ops import rfft2d_freqs
from featviz.params.base import ImageParam, ValueRange


class FFTImage(ImageParam):
    """Images parameterized by their Fourier spectrum, scaled by ``1 / f**decay``.

    With ``decay=1`` every frequency has about equal energy in natural images, so a step in
    this space is a whitened (decorrelated) step in pixel space.
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        sd: float = 0.01,
        decay: float = 1.0,
        decorrelate: bool = True,
        value_range: ValueRange = "sigmoid",
        generator: torch.Generator | None = None,
        channels: int = 3,
    ) -> None:
        super().__init__(size, batch, decorrelate, value_range, channels)
        if not math.isfinite(decay) or decay < 0:
            raise ConfigError(f"param.decay={decay} must be a finite number >= 0 (1.0 is the 1/f spectrum)")
        h = w = self.size
        freqs = rfft2d_freqs(h, w)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay
        # With the orthonormal inverse FFT no extra sqrt(h*w) factor is needed (Lucid's
        # TF code multiplies by it only because TF's irfft2d is unnormalized).
        self.register_buffer("scale", scale[None, None], persistent=False)
        init = torch.randn(2, self.batch, self.channels, *freqs.shape, generator=generator) * sd
        self.spectrum = nn.Parameter(init)

    def decode(self) -> torch.Tensor:
        """The unconstrained image (before colour decorrelation and squash)."""
        spec = torch.complex(self.spectrum[0], self.spectrum[1]) * self.scale
        image = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho")
        # /4 keeps the initial pre-squash values small, as in Lucid, so sigmoid starts near grey.
        return image / 4.0

    def forward(self) -> torch.Tensor:
        return self.to_rgb(self.decode())


class SharedFFTImage(FFTImage):
    """A batch of FFT images plus low-resolution components shared across the batch.

    For interpolation (article, "Interaction between Neurons"): frames optimized
    independently drift apart in layout, so a blend from unit A to unit B reads as a row of
    unrelated pictures. Here every frame is its own FFT image *plus* smooth components:

    * ``shared``: one low-resolution tensor per factor (side ``size // factor``) added to
      every frame, so the frames share their coarse layout;
    * ``blended``: two low-resolution tensors per factor, mixed linearly from the first
      frame to the last, so the shared layout may itself change along the batch.

    Components are bilinearly upsampled pixel values added before the colour
    decorrelation and squash, like the unique part. The factors follow Lucid's
    interpolation notebook (shared at 1/2..1/16, blended at 1/8 and 1/16).
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        shared: Sequence[int] = (2, 4, 8, 16),
        blended: Sequence[int] = (8, 16),
        **fft: Any,
    ) -> None:
        """``fft``: the options of :class:`FFTImage` (``sd``, ``decay``, ``decorrelate``,
        ``value_range``, ``generator``, ``channels``), which the components share."""
        super().__init__(size, batch, **fft)
        sd, generator = fft.get("sd", 0.01), fft.get("generator")
        for factor in [*shared, *blended]:
            if not 1 <= int(factor) <= self.size:
                raise ConfigError(f"param shared/blended factor {factor} must be in 1..{self.size} (the side is size // factor)")

        def lowres(n: int, factor: int) -> nn.Parameter:
            side = self.size // int(factor)
            return nn.Parameter(torch.randn(n, self.channels, side, side, generator=generator) * sd)

        self.shared = nn.ParameterList([lowres(1, f) for f in shared])
        self.blended = nn.ParameterList([lowres(2, f) for f in blended])

    def _upsample(self, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(t, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def forward(self) -> torch.Tensor:
        # The unique part, kept before the squash so the shared components can add to it.
        total = self.decode()
        for p in self.shared:
            total = total + self._upsample(p)
        t = torch.linspace(0.0, 1.0, self.batch, device=total.device, dtype=total.dtype).view(-1, 1, 1, 1)
        for p in self.blended:
            up = self._upsample(p)
            total = total + (1 - t) * up[0:1] + t * up[1:2]
        return self.to_rgb(total)
