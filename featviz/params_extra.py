"""Richer parameterizations: Laplacian pyramid, CPPN, magnitude-constrained Fourier, generator.

Each is an :class:`~featviz.params.ImageParam` (``forward() -> [B, 3, H, W]`` in [0, 1]) and
is registered in :data:`featviz.params.PARAMS` at the end of this module, so
``param=laplacian|cppn|maco|generator`` works like ``param=fft``. They are the
parameterizations later work added to the article's pixel / decorrelated-Fourier pair:

* :class:`LaplacianPyramidImage` (Lucid's ``laplacian_pyramid``): a sum of bilinearly
  upsampled tensors at sides ``size, size/2, size/4, ...``. Adam moves every coarse value as
  far as every fine one, so low frequencies change as fast as high ones.
* :class:`CPPNImage` (Mordvintsev et al., "Differentiable Image Parameterizations", Distill
  2018): a small per-pixel network from ``(x, y)`` to colour; its smoothness is its prior.
* :class:`MacoImage` (Fel et al. 2023, MACO): only the Fourier *phase* is optimized; the
  magnitude is fixed to the average spectrum of natural images, so the image keeps a
  natural power spectrum whatever the objective asks.
* :class:`GeneratorImage`: the image is ``G(z)`` for a pretrained generator (GAN or VAE
  decoder) and only the latent ``z`` is optimized; :class:`featviz.priors.LatentPrior` keeps
  ``z`` where the generator was trained.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from featviz.errors import ConfigError, WeightsError
from featviz.params import _COLOR_NORMALIZED, PARAMS, ImageParam, ValueRange

DATA_DIR = Path(__file__).resolve().parent / "data"
#: Magnitude spectrum that ships with featviz (``docs/learned_priors.md`` says from which images).
DEFAULT_SPECTRUM = DATA_DIR / "maco_spectrum.pt"


def _lr_scale(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"param.lr_scale={value} must be a finite number > 0 (1.0 leaves the optimizer's step as it is)")
    return float(value)


class LaplacianPyramidImage(ImageParam):
    """Images as a sum of ``levels`` tensors at sides ``size / 2**k``, upsampled bilinearly.

    A pixel parameterization gives every frequency its own free value, and the gradient
    of a network is dominated by high frequencies. Here a coarse value covers ``4**k``
    pixels; with Adam each moves about ``lr`` per step, so the coarse layout moves as
    fast as the fine detail and the picture is built from coarse to fine.
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        sd: float = 0.01,
        levels: int = 4,
        decorrelate: bool = True,
        value_range: ValueRange = "sigmoid",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(size, batch, decorrelate, value_range)
        levels = int(levels)
        if not 1 <= levels or self.size // 2 ** (levels - 1) < 1:
            raise ConfigError(f"param.levels={levels} must be in 1..{int(math.log2(self.size)) + 1} for param.size={self.size}")
        sides = [max(1, math.ceil(self.size / 2**k)) for k in range(levels)]
        self.levels = nn.ParameterList(nn.Parameter(torch.randn(self.batch, 3, s, s, generator=generator) * sd) for s in sides)

    def forward(self) -> torch.Tensor:
        total = self.levels[0]
        for level in self.levels[1:]:
            total = total + F.interpolate(level, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.to_rgb(total)


def composite_activation(x: torch.Tensor) -> torch.Tensor:
    """``atan(x)`` and ``atan(x)**2``, rescaled to about unit variance, stacked on channels.

    The CPPN activation of Mordvintsev et al. (2018): bounded, smooth, and with the square
    the network can make symmetric bands as easily as edges.
    """
    a = torch.atan(x)
    return torch.cat([a / 0.67, a * a / 0.6], dim=1)


class CPPNImage(ImageParam):
    """A compositional pattern-producing network: colour as a smooth function of position.

    ``layers`` 1x1 layers of ``hidden`` units with :func:`composite_activation` map the
    coordinates ``(x, y)`` (uniform on ``[-sqrt 3, sqrt 3]``, unit variance) to three
    pre-squash channels. Every batch element has its own weights. Weights start with
    variance ``1 / fan_in`` so activations keep their scale with depth, the output layer's
    times ``sd``. ``sd=1`` (a colourful first pattern) is the default because a near-grey
    start (``sd=0.1``) was measured to collapse to one flat colour under the standard
    transforms (objective 5.2 against 22.6 at 128 steps, docs/learned_priors.md).

    A CPPN's weights move the whole image at once, so they need about ten times smaller
    steps than pixels (Lucid's notebook uses Adam at 0.005): the weights are stored divided
    by ``lr_scale`` (default 0.1), which turns the run's ``optimizer.lr`` into that step.
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        sd: float = 1.0,
        hidden: int = 24,
        layers: int = 8,
        lr_scale: float = 0.1,
        decorrelate: bool = False,
        value_range: ValueRange = "sigmoid",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(size, batch, decorrelate, value_range)
        hidden, layers = int(hidden), int(layers)
        if hidden < 1 or layers < 1:
            raise ConfigError(f"param.hidden={hidden} and param.layers={layers} must be >= 1 (24 and 8 are typical)")
        self.lr_scale = _lr_scale(lr_scale)
        coords = (torch.arange(self.size, dtype=torch.float32) + 0.5) / self.size * 2 - 1
        y, x = torch.meshgrid(coords * math.sqrt(3), coords * math.sqrt(3), indexing="ij")
        self.register_buffer("coords", torch.stack([x, y])[None], persistent=False)
        fan_ins = [2] + [2 * hidden] * layers
        outs = [hidden] * layers + [3]
        weights = []
        for i, (fan_in, out) in enumerate(zip(fan_ins, outs)):
            std = math.sqrt(1.0 / fan_in) * (sd if i == layers else 1.0)
            weights.append(nn.Parameter(torch.randn(self.batch, out, fan_in, generator=generator) * std / self.lr_scale))
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(self.batch, out)) for out in outs)

    def forward(self) -> torch.Tensor:
        h = self.coords.expand(self.batch, -1, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("boi,bihw->bohw", w * self.lr_scale, h) + (b * self.lr_scale)[:, :, None, None]
            if i < last:
                h = composite_activation(h)
        return self.to_rgb(h)


# --- MACO -----------------------------------------------------------------------------


def to_decorrelated(images: torch.Tensor) -> torch.Tensor:
    """RGB images in [0, 1] -> the decorrelated colour space of :class:`ImageParam`, mean removed.

    The inverse of the colour mixing in :meth:`ImageParam.to_rgb`, applied to ``x - mean``
    of every image and channel, so a MACO field built from these statistics and passed
    through ``to_rgb(..., clamp)`` has the colours and contrast of the photos.
    """
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    inverse = torch.linalg.inv(_COLOR_NORMALIZED).to(images)
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
        self.lr_scale = _lr_scale(lr_scale)
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


# --- generator ------------------------------------------------------------------------


def _instantiate(net: nn.Module | Mapping[str, Any]) -> nn.Module:
    if isinstance(net, nn.Module):
        return net
    if not isinstance(net, Mapping) or "_target_" not in net:
        raise ConfigError(f"param.net={net!r} must be a generator config with a _target_ (e.g. my_pkg.Generator) and its arguments")
    from hydra.utils import instantiate  # only this config path needs Hydra

    try:
        module = instantiate(dict(net), _convert_="all")
    except Exception as exc:  # noqa: BLE001 - Hydra wraps the cause; show it with the fix
        raise ConfigError(f"param.net could not be built ({exc}); check param.net._target_ and its arguments") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"param.net._target_={net['_target_']!r} built a {type(module).__name__}, not a torch.nn.Module")
    return module


def _load_weights(net: nn.Module, checkpoint: str | os.PathLike[str]) -> None:
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise WeightsError(f"param.checkpoint={str(path)!r} does not exist; point it at the generator's saved state_dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"param.checkpoint={str(path)!r} is not a torch state_dict ({exc}); save it with torch.save(net.state_dict(), path)") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"param.checkpoint does not fit param.net ({first}); use the _target_ and arguments it was trained with") from None


class GeneratorImage(ImageParam):
    """Images ``G(z)`` of a frozen pretrained generator; only the latent ``z`` is optimized.

    ``net`` is the generator (a module, or a config mapping with ``_target_`` built by Hydra)
    and ``checkpoint`` its weights (a ``state_dict`` file, or one under a ``state_dict``
    key); a config mapping needs a checkpoint, since a random generator is no prior. ``z``
    has shape ``[batch, *latent_shape]`` (e.g. ``[128]``, or ``[100, 1, 1]`` for DCGAN) and
    starts from ``N(0, latent_sd**2)``. The generator's output, in ``output_range``, is
    mapped to [0, 1], made RGB if it is grey and resized to ``size``.

    The generator is the prior: whatever ``z`` is, the image is one the generator can
    draw. :class:`featviz.priors.LatentPrior` (``regularizer.latent``) keeps ``z`` in the
    region the generator was trained on.
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        checkpoint: str | os.PathLike[str] | None = None,
        size: int = 128,
        batch: int = 1,
        latent_shape: Sequence[int] = (128,),
        latent_sd: float = 1.0,
        output_range: Sequence[float] = (-1.0, 1.0),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(size, batch, decorrelate=False, value_range="clamp")
        if not isinstance(net, nn.Module) and checkpoint is None:
            raise ConfigError("param.checkpoint is required with param=generator; point it at the generator's trained weights")
        self.net = _instantiate(net)
        if checkpoint is not None:
            _load_weights(self.net, checkpoint)
        self.net.requires_grad_(False)
        self.net.eval()
        lo, hi = (float(v) for v in output_range)
        if not hi > lo:
            raise ConfigError(f"param.output_range={list(output_range)} must be [low, high] with high > low (e.g. [-1, 1] for tanh)")
        self.output_range = (lo, hi)
        shape = [int(s) for s in latent_shape]
        if not shape or min(shape) < 1:
            raise ConfigError(f"param.latent_shape={list(latent_shape)} must be positive sizes, e.g. [128]")
        self.latent = nn.Parameter(torch.randn(self.batch, *shape, generator=generator) * float(latent_sd))

    def train(self, mode: bool = True) -> GeneratorImage:
        """Keep the generator in eval mode (its batch norms use their running statistics)."""
        super().train(mode)
        self.net.eval()
        return self

    def latent_penalty(self) -> torch.Tensor:
        """``0.5 * mean(z**2)`` per image: the negative log density of a standard normal prior."""
        return 0.5 * self.latent.pow(2).flatten(1).mean(1)

    def forward(self) -> torch.Tensor:
        out = self.net(self.latent)
        if out.dim() != 4 or out.shape[1] not in (1, 3) or out.shape[0] != self.batch:
            raise ConfigError(f"param.net returned shape {tuple(out.shape)}; a generator must return images [B, 1 or 3, H, W]")
        lo, hi = self.output_range
        images = ((out - lo) / (hi - lo)).clamp(0.0, 1.0)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-2:] != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return images


PARAMS.update({"laplacian": LaplacianPyramidImage, "cppn": CPPNImage, "maco": MacoImage, "generator": GeneratorImage})
