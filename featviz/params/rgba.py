"""Semi-transparent images (Mordvintsev et al. 2018, "Differentiable Image Parameterizations").

Why: an opaque render must fill every pixel, so it fills the background with more of the
feature. With an alpha channel composited on a new random background at every call, a
pixel only helps where it is opaque, and a penalty on the mean alpha
(:class:`featviz.regularizers.alpha.AlphaPenalty`) makes opacity cost something: what stays
opaque is the part of the image the unit needs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from featviz.errors import ConfigError
from featviz.params.fourier import FFTImage


class RGBAImage(FFTImage):
    """A decorrelated FFT image with one more (alpha) channel, composited on random backgrounds.

    ``forward()`` returns ``rgb * alpha + background * (1 - alpha)``, ``[B, C, H, W]``, with a
    new background at every call: random colours on a ``background_grid`` x ``background_grid``
    grid, upsampled bilinearly (smooth, so the background cannot be told from the image by
    its texture alone). The draws come from ``generator`` (the run's), so a seed fixes
    them. :meth:`rgba` gives the image with its alpha, ``[B, C + 1, H, W]``; alpha goes
    through a sigmoid and starts near 0.5.
    """

    def __init__(self, size: int = 128, batch: int = 1, channels: int = 3, background_grid: int = 4, **fft: Any) -> None:
        """``fft``: the options of :class:`FFTImage` (``sd``, ``decay``, ``decorrelate``, ``value_range``, ``generator``)."""
        # The spectrum holds the colour channels and alpha; only the colours are decorrelated.
        super().__init__(size, batch, channels=int(channels) + 1, **fft)
        self.channels = int(channels)
        self.decorrelate = bool(fft.get("decorrelate", True)) and self.channels == 3
        if not 1 <= int(background_grid) <= self.size:
            raise ConfigError(f"param.background_grid={background_grid} must be in 1..{self.size} (1 = one colour per background)")
        self.background_grid = int(background_grid)
        self.generator: torch.Generator | None = fft.get("generator")

    def rgba(self) -> torch.Tensor:
        """The colours in [0, 1] and the alpha in [0, 1], ``[B, C + 1, H, W]``."""
        t = self.decode()
        return torch.cat([self.to_rgb(t[:, : self.channels]), torch.sigmoid(t[:, self.channels :])], dim=1)

    def background(self, like: torch.Tensor) -> torch.Tensor:
        """A new random smooth background shaped like ``like`` ``[B, C, H, W]``."""
        g = self.background_grid
        coarse = torch.rand(self.batch, self.channels, g, g, generator=self.generator).to(like)
        return F.interpolate(coarse, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self) -> torch.Tensor:
        rgba = self.rgba()
        rgb, alpha = rgba[:, : self.channels], rgba[:, self.channels :]
        return rgb * alpha + self.background(rgb) * (1 - alpha)
