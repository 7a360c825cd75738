"""MACO images (Fel et al. 2023): only the Fourier phase moves; the magnitude is a fixed natural spectrum."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from featviz.data import DATA_DIR
from featviz.errors import ConfigError, WeightsError
from featviz.params.base import COLOR_NORMALIZED, ImageParam, ValueRange, check_lr_scale

#: Magnitude spectrum that ships with featviz (``docs/learned_priors.md`` says from which images).
DEFAULT_SPECTRUM = DATA_DIR / "maco_spectrum.pt"


def to_decorrelated(images: torch.Tensor) -> torch.Tensor:
    """RGB images in [0, 1] -> the decorrelated colour space of :class:`ImageParam`, mean removed.

    The inverse of the colour mixing in :meth:`ImageParam.to_rgb`, applied to ``x - mean``
    of every image and channel, so a MACO field built from these statistics and passed
    through ``to_rgb(..., clamp)`` has the colours and contrast of the photos.
    """
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    inverse = torch.linalg.inv(COLOR_NORMALIZED).to(images)
    return torch.einsum("bchw,dc->bdhw", centred, inverse)


def estimate_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Average Fourier magnitude ``[3, H, W//2+1]`` of ``images`` ``[N, 3, H, W]`` in [0, 1].

    Magnitudes (not powers) are averaged, per decorrelated colour channel, with the
    orthonormal FFT so that the mean power equals the pixel variance. Each crop is
    multiplied by a 2-D Hann window (rescaled to keep its energy) first: the FFT treats a
    crop as periodic, and the jumps between its opposite borders would otherwise add a
    cross of power on the horizontal and vertical frequency axes, which random phases turn
    into a grid of straight edges. The DC bin is zero: the mean colour is the grey of
    ``to_rgb``, and a DC phase could only flip its sign.
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise ConfigError(f"images of shape {tuple(images.shape)}; the spectrum needs square RGB images [N, 3, S, S]")
    hann = torch.hann_window(images.shape[-1], periodic=False, dtype=torch.float32)
    window = hann[:, None] * hann[None, :]
    window = window / window.pow(2).mean().sqrt()
    mag = torch.fft.rfft2(to_decorrelated(images.float()) * window, norm="ortho").abs().mean(0)
    mag[:, 0, 0] = 0.0
    return mag


def _bin_weights(h: int, w: int) -> torch.Tensor:
    """How many bins of the full spectrum each ``rfft2`` bin stands for (1 or 2)."""
    weights = torch.full((h, w // 2 + 1), 2.0)
    weights[:, 0] = 1.0
    if w % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def resample_magnitude(mag: torch.Tensor, size: int) -> torch.Tensor:
    """A ``[3, S, S//2+1]`` magnitude spectrum resampled to ``size`` pixels a side.

    Interpolated bilinearly in cycles per pixel (so the spectrum keeps its shape), then
    rescaled so the pixel variance (mean power over the full spectrum) stays the same.
    """
    src = mag.shape[-2]
    if src == size:
        return mag.clone()
    # Rows in fftshift order span -0.5..0.5 cycles/px; columns 0..0.5.
    shifted = torch.fft.fftshift(mag, dim=-2)[None]
    fy = torch.fft.fftfreq(size)[:, None].expand(size, size // 2 + 1)
    fx = torch.fft.rfftfreq(size)[None, :].expand(size, size // 2 + 1)
    rows = fy * src + src // 2  # fractional index in the shifted source rows
    cols = fx * src
    grid = torch.stack([cols / (mag.shape[-1] - 1) * 2 - 1, rows / (src - 1) * 2 - 1], dim=-1)[None]
    out = F.grid_sample(shifted, grid.to(mag), mode="bilinear", padding_mode="border", align_corners=True)[0]
    out[:, 0, 0] = 0.0

    def variance(m: torch.Tensor, side: int) -> torch.Tensor:
        return (m**2 * _bin_weights(side, side).to(m)).sum(dim=(-2, -1)) / side**2

    ratio = variance(mag, src) / variance(out, size).clamp_min(1e-12)
    return out * ratio.sqrt()[:, None, None]


def load_magnitude(path: str | os.PathLike[str] | None) -> torch.Tensor:
    """The ``magnitude`` tensor of a file written by ``featviz maco-spectrum`` (None: the shipped one)."""
    file = Path(path).expanduser() if path is not None else DEFAULT_SPECTRUM
    if not file.is_file():
        raise ConfigError(f"param.spectrum={str(file)!r} does not exist; make one with `python -m featviz maco-spectrum FOLDER --out FILE` or use null for the shipped one")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        mag = state["magnitude"].float()
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same fix
        raise WeightsError(f"param.spectrum={str(file)!r} is not a featviz spectrum ({exc}); recompute it with `python -m featviz maco-spectrum`") from None
    if mag.dim() != 3 or mag.shape[0] != 3 or mag.shape[-1] != mag.shape[-2] // 2 + 1:
        raise WeightsError(f"param.spectrum={str(file)!r} holds a magnitude of shape {tuple(mag.shape)}, not [3, S, S//2+1]; recompute it")
    return mag


class MacoImage(ImageParam):
    """Magnitude-constrained Fourier image (MACO): optimize the phase, keep the magnitude.

    ``image = to_rgb(irfft2(magnitude * exp(i * phase)))`` with ``magnitude`` the average
    spectrum of natural images (``spectrum``: a file from ``featviz maco-spectrum``, or None
    for the one that ships with featviz), resampled to ``size``. Every step changes only
    where structure sits, never how much energy each frequency has, which is why MACO
    needs no other regularizer.

    The phase of the bins that are their own mirror image in ``rfft2`` (column 0 and the
    Nyquist column) is antisymmetrized so the spectrum is Hermitian and the magnitude stays
    exactly fixed. Phases start uniform on ``[-pi, pi)``. A phase of 1 radian is a large
    change yet a small number, so it is stored divided by ``lr_scale`` (default 10: Adam's
    0.05 becomes 0.5 rad per step; 3 and 10 were measured about equal, 1 and 30 worse).

    ``value_range="clamp"`` (the default) keeps the statistics of the photos; with
    ``sigmoid`` the field is multiplied by 4 first so mid-grey images match to first order.
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        spectrum: str | os.PathLike[str] | None = None,
        lr_scale: float = 10.0,
        decorrelate: bool = True,
        value_range: ValueRange = "clamp",
        generator: torch.Generator | None = None,
        magnitude: torch.Tensor | None = None,
    ) -> None:
        super().__init__(size, batch, decorrelate, value_range)
        self.lr_scale = check_lr_scale(lr_scale)
        mag = load_magnitude(spectrum) if magnitude is None else magnitude.float()
        self.register_buffer("magnitude", resample_magnitude(mag, self.size), persistent=False)
        h, w = self.size, self.size // 2 + 1
        self.register_buffer("mirror", (-torch.arange(h)) % h, persistent=False)
        self_conj = [0] + ([w - 1] if self.size % 2 == 0 else [])
        column = torch.zeros(w, dtype=torch.bool)
        column[self_conj] = True
        self.register_buffer("self_conj", column, persistent=False)
        init = (torch.rand(self.batch, 3, h, w, generator=generator) * 2 - 1) * math.pi
        self.phase = nn.Parameter(init / self.lr_scale)

    def hermitian_phase(self) -> torch.Tensor:
        """The phase with column 0 (and Nyquist) made odd in the row index."""
        phase = self.phase * self.lr_scale
        odd = 0.5 * (phase - phase[..., self.mirror, :])
        return torch.where(self.self_conj, odd, phase)

    def field(self) -> torch.Tensor:
        """The pre-squash image in the decorrelated space; its ``rfft2`` magnitude is fixed."""
        spec = torch.polar(self.magnitude.expand(self.batch, -1, -1, -1), self.hermitian_phase())
        return torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho")

    def forward(self) -> torch.Tensor:
        t = self.field()
        return self.to_rgb(t * 4.0 if self.value_range == "sigmoid" else t)
