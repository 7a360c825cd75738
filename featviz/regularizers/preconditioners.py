"""Gradient preconditioners: callbacks that change how the image parameter moves.

Gradient blurring and frequency normalization act on the pixel parameterization's gradient;
the parameter blur filters the parameter itself every N steps."""

from __future__ import annotations

import math

import torch

from featviz.callbacks import ClosingCallback, RenderContext
from featviz.errors import ConfigError
from featviz.ops import gaussian_blur, laplacian_merge, laplacian_split, rfft2d_freqs
from featviz.params import PARAMS
from featviz.params.base import ImageParam
from featviz.params.fourier import FFTImage
from featviz.params.pixel import PixelImage


def _kind(param: ImageParam) -> str:
    """The config name (``param=...``) of a parameterization, for messages."""
    return next((k for k, cls in PARAMS.items() if cls is type(param)), type(param).__name__)


def _pixel_tensor(param: ImageParam, what: str) -> torch.Tensor:
    if not isinstance(param, PixelImage):
        raise ConfigError(
            f"{what} preconditions the pixel parameterization; use param=pixel or set {what}=0 "
            f"(param={_kind(param)} is already a preconditioner)"
        )
    return param.pixels


class Preconditioner(ClosingCallback):
    """A callback that changes how the image parameter moves; knows which params it fits."""

    def check(self, param: ImageParam) -> None:
        """Raise :class:`ConfigError` if this cannot act on ``param`` (called at build time)."""
        raise NotImplementedError


class GradientHook(Preconditioner):
    """Transform the gradient of the pixel parameter before the optimizer sees it."""

    what = "gradient hook"

    def __init__(self) -> None:
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def check(self, param: ImageParam) -> None:
        _pixel_tensor(param, self.what)

    def transform(self, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def on_start(self, ctx: RenderContext) -> None:
        self._handle = _pixel_tensor(ctx.param, self.what).register_hook(self.transform)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class GradientBlur(GradientHook):
    """Blur the pixel gradient with a Gaussian of ``sigma`` pixels (Øygard 2015).

    High-frequency components of each step are damped, but a direction the objective keeps
    pushing still accumulates: a soft preference, not a constraint on the image.
    """

    what = "param.grad_blur_sigma"

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if not math.isfinite(sigma) or sigma <= 0:
            raise ConfigError(f"param.grad_blur_sigma={sigma} must be > 0 pixels (0 turns it off; 1.0 is typical)")
        self.sigma = float(sigma)

    def transform(self, grad: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(grad, self.sigma)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).flatten(1).mean(1).sqrt().view(-1, *([1] * (x.dim() - 1)))


def normalize_frequencies(grad: torch.Tensor, levels: int, eps: float = 1e-12) -> torch.Tensor:
    """Give every octave of ``grad`` the same RMS, keeping each image's total gradient RMS.

    A Laplacian pyramid splits the gradient into octave bands; each band is divided by its
    own RMS (per image), so the many weak low-frequency components are not drowned by the
    few strong high-frequency ones (Mordvintsev et al. 2015). The result is rescaled to
    the input's RMS, so only the *direction* changes, as with any preconditioner, and plain
    SGD keeps its step size.
    """
    bands = [band / (_rms(band) + eps) for band in laplacian_split(grad, levels)]
    out = laplacian_merge(bands)
    return out * (_rms(grad) / (_rms(out) + eps))


class GradientNormalize(GradientHook):
    """Equalize the pixel gradient's energy across ``levels`` octaves (Laplacian pyramid)."""

    what = "param.grad_normalize"

    def __init__(self, levels: int) -> None:
        super().__init__()
        if int(levels) != levels or levels < 2:
            raise ConfigError(f"param.grad_normalize={levels} must be a whole number of pyramid levels >= 2 (0 turns it off; 4 is typical)")
        self.levels = int(levels)

    def check(self, param: ImageParam) -> None:
        super().check(param)
        if param.size < 2**self.levels:
            raise ConfigError(
                f"param.grad_normalize={self.levels} levels need param.size >= {2 ** self.levels}; lower the levels or raise the size"
            )

    def transform(self, grad: torch.Tensor) -> torch.Tensor:
        return normalize_frequencies(grad, self.levels)


def gaussian_transfer(size: int, sigma: float) -> torch.Tensor:
    """Fourier transfer function of a Gaussian blur of ``sigma`` pixels, on the rFFT grid."""
    f = rfft2d_freqs(size, size)
    return torch.exp(-2.0 * math.pi**2 * sigma**2 * f**2)


class ParamBlur(Preconditioner):
    """Blur the image parameter in place every ``every`` steps (Yosinski et al. 2015).

    Unlike the ``blur`` regularizer, which adds a pull towards the blurred image to the
    loss, this overwrites the parameter, so the optimizer cannot trade it off against the
    objective: the strongest form of frequency penalization short of a learned prior.
    """

    def __init__(self, sigma: float, every: int = 1) -> None:
        if not math.isfinite(sigma) or sigma <= 0:
            raise ConfigError(f"regularizer.param_blur={sigma} must be > 0 pixels (0 turns it off; 0.5-1 is typical)")
        if int(every) != every or every < 1:
            raise ConfigError(f"regularizer.param_blur_every={every} must be a whole number of steps >= 1")
        self.sigma = float(sigma)
        self.every = int(every)

    def check(self, param: ImageParam) -> None:
        # Exact types: a subclass may add parameters (shared_fft) that this blur would miss.
        if type(param) not in (PixelImage, FFTImage):
            raise ConfigError(
                f"regularizer.param_blur works on param=pixel or param=fft, not param={_kind(param)}; "
                f"use regularizer.blur (a loss term) instead"
            )

    @torch.no_grad()
    def apply(self, param: ImageParam) -> None:
        """Blur ``param``'s image once."""
        if isinstance(param, PixelImage):
            param.pixels.copy_(gaussian_blur(param.pixels, self.sigma))
        elif isinstance(param, FFTImage):
            param.spectrum.mul_(gaussian_transfer(param.size, self.sigma).to(param.spectrum))

    def on_start(self, ctx: RenderContext) -> None:
        self.check(ctx.param)

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        if step % self.every == 0:
            self.apply(ctx.param)


def build_preconditioners(
    param: ImageParam,
    grad_blur_sigma: float = 0.0,
    grad_normalize: int = 0,
    param_blur: float = 0.0,
    param_blur_every: int = 1,
) -> list[Preconditioner]:
    """The callbacks these settings ask for, checked against ``param`` (0 = off for each).

    Gradient blurring runs before frequency normalization when both are on.
    """
    callbacks: list[Preconditioner] = []
    if grad_blur_sigma:
        callbacks.append(GradientBlur(float(grad_blur_sigma)))
    if grad_normalize:
        callbacks.append(GradientNormalize(grad_normalize))
    if param_blur:
        callbacks.append(ParamBlur(float(param_blur), param_blur_every))
    for cb in callbacks:
        cb.check(param)
    return callbacks
