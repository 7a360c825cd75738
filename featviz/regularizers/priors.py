"""Learned priors as regularizers: a denoising autoencoder, a patch bank, a latent prior.

The data they need ships in featviz/data/; featviz.tools.prior_data makes new files from photos."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from featviz.data import DATA_DIR
from featviz.errors import ConfigError, WeightsError
from featviz.params.base import ImageParam
from featviz.params.generator import GeneratorImage
from featviz.regularizers.base import FilterPull, Regularizer

DEFAULT_DENOISER = DATA_DIR / "denoiser.pt"


DEFAULT_PATCH_BANK = DATA_DIR / "patch_bank.pt"


def _load(path: Path, what: str, command: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what}={str(path)!r} does not exist; make one with `python -m featviz {command} FOLDER --out FILE` or use null for the shipped one")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same fix
        raise WeightsError(f"{what}={str(path)!r} is unreadable ({exc}); remake it with `python -m featviz {command}`") from None
    if not isinstance(state, dict) or state.get("kind") != command:
        raise WeightsError(f"{what}={str(path)!r} was not written by `featviz {command}`; remake it with that command")
    return state


class Denoiser(nn.Module):
    """A small residual convolutional denoising autoencoder: ``D(x) = x + r(x)``.

    Encoder: a 3x3 conv at full resolution, a strided one to half resolution, a 3x3 conv
    there; decoder: a conv, bilinear upsampling, and a last conv that also sees the
    full-resolution features (a skip). The half-resolution bottleneck gives each output a
    receptive field of about 15 px at a cost CPU training affords at 64 px. Only the
    residual is learned, and the last conv starts at zero, so an untrained ``D`` is the
    identity and its prior is off.
    """

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w = int(width)
        if w < 1:
            raise ConfigError(f"denoiser width={w} must be >= 1 (24 is the default)")
        self.width = w

        def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="replicate")

        self.inp = conv(3, w)
        self.down = conv(w, 2 * w, stride=2)
        self.mid = conv(2 * w, 2 * w)
        self.up = conv(2 * w, w)
        self.out = conv(2 * w, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = F.relu(self.inp(x))
        half = F.relu(self.mid(F.relu(self.down(full))))
        up = F.interpolate(F.relu(self.up(half)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x + self.out(torch.cat([up, full], dim=1))

    def reset(self, generator: torch.Generator) -> Denoiser:
        """He-uniform weights from ``generator`` (not the global RNG), zero biases, zero last layer."""
        with torch.no_grad():
            for conv in (self.inp, self.down, self.mid, self.up, self.out):
                bound = 0.0 if conv is self.out else math.sqrt(6.0 / (conv.in_channels * 9))
                conv.weight.copy_((torch.rand(conv.weight.shape, generator=generator) * 2 - 1) * bound)
                conv.bias.zero_()
        return self


def load_denoiser(path: str | os.PathLike[str] | None = None) -> Denoiser:
    """A denoiser saved by ``featviz train-denoiser`` (None: the one that ships with featviz)."""
    file = Path(path).expanduser() if path is not None else DEFAULT_DENOISER
    state = _load(file, "regularizer.denoiser_path", "train-denoiser")
    net = Denoiser(int(state["width"]))
    try:
        net.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
    except (RuntimeError, KeyError) as exc:
        raise WeightsError(f"regularizer.denoiser_path={str(file)!r} does not fit the denoiser ({exc}); retrain it with `python -m featviz train-denoiser`") from None
    return net.eval().requires_grad_(False)


class DenoiserPrior(FilterPull):
    """Add the denoising residual ``x - D(x)`` (per pixel) to the gradient of the loss.

    As a :class:`FilterPull` whose filter is the denoiser: the penalty
    ``0.5 * ||x - stopgrad(D(x))||^2 / (H * W)`` has gradient ``(x - D(x)) / (H * W)``, the
    DAE estimate of ``-sigma^2 * grad log p(x)`` (Alain & Bengio 2014) that Nguyen et al.
    (2016) add to the activation's gradient. The weight is the prior's step size against
    the objective's.
    """

    name = "denoiser"

    def __init__(self, weight: float, denoiser: Denoiser | str | os.PathLike[str] | None = None) -> None:
        super().__init__(weight)
        self.net = denoiser if isinstance(denoiser, Denoiser) else load_denoiser(denoiser)

    @torch.no_grad()
    def filtered(self, images: torch.Tensor) -> torch.Tensor:
        if self.net.inp.weight.device != images.device:
            self.net.to(images.device)
        return self.net(images)


def load_patch_bank(path: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """The uint8 ``[N, 3, p, p]`` patches of a bank from ``featviz patch-bank`` (None: the shipped one)."""
    file = Path(path).expanduser() if path is not None else DEFAULT_PATCH_BANK
    patches = _load(file, "regularizer.patch_bank", "patch-bank").get("patches")
    if not isinstance(patches, torch.Tensor) or patches.dim() != 4 or patches.shape[1] != 3 or patches.shape[-1] != patches.shape[-2]:
        raise WeightsError(f"regularizer.patch_bank={str(file)!r} holds no [N, 3, p, p] patches; remake it with `python -m featviz patch-bank`")
    return patches


class PatchPrior(Regularizer):
    """Mean squared distance from each image patch to its nearest patch in a natural-image bank.

    The image is cut into ``p x p`` patches every ``stride`` pixels (default ``p // 2``);
    the nearest bank patch of each is found with ``torch.cdist`` (no gradient), and the
    penalty is the mean squared difference to it, so the gradient pulls every patch
    towards a patch that occurs in photos (Wei et al. 2015). Cost grows with the bank, so
    it is cut to ``bank_size`` evenly spaced patches (no randomness: the run's generator
    stays untouched).
    """

    name = "patch"

    def __init__(self, weight: float, bank: torch.Tensor | str | os.PathLike[str] | None = None, stride: int | None = None, bank_size: int = 1024) -> None:
        super().__init__(weight)
        patches = bank if isinstance(bank, torch.Tensor) else load_patch_bank(bank)
        if int(bank_size) < 1:
            raise ConfigError(f"regularizer.patch_bank_size={bank_size} must be >= 1 (1024 is the default)")
        if patches.shape[0] > int(bank_size):
            patches = patches[torch.linspace(0, patches.shape[0] - 1, int(bank_size)).round().long()]
        if patches.dtype == torch.uint8:
            patches = patches.float() / 255.0
        self.patch = int(patches.shape[-1])
        self.stride = int(stride) if stride is not None else max(1, self.patch // 2)
        if self.stride < 1:
            raise ConfigError(f"regularizer.patch_stride={stride} must be >= 1 (null = half the patch side)")
        self.bank = patches.flatten(1).float()

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """The bank patch nearest to each row of ``flat`` ``[B, L, D]``: ``[B, L, D]``."""
        index = torch.cdist(flat, self.bank[None].expand(flat.shape[0], -1, -1)).argmin(-1)
        return self.bank[index]

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        if min(images.shape[-2:]) < self.patch:
            raise ConfigError(f"param.size={images.shape[-1]} is smaller than the bank's {self.patch} px patches; raise param.size")
        if self.bank.device != images.device:
            self.bank = self.bank.to(images.device)
        flat = F.unfold(images, self.patch, stride=self.stride).transpose(1, 2)
        with torch.no_grad():
            target = self.nearest(flat.detach())
        return (flat - target).pow(2).mean(dim=(1, 2))

    def __repr__(self) -> str:
        return f"PatchPrior(weight={self.weight}, patch={self.patch}, stride={self.stride}, bank={self.bank.shape[0]})"


class LatentPrior(Regularizer):
    """Standard normal prior on the latent code of a :class:`GeneratorImage`: ``0.5 * mean(z**2)``.

    A generator draws good images only near where its training latents lay; a latent
    pushed far out by the objective gives artefacts. The penalty ignores the images and
    reads the parameterization's latent.
    """

    name = "latent"

    def __init__(self, weight: float, param: ImageParam) -> None:
        super().__init__(weight)
        if not isinstance(param, GeneratorImage):
            raise ConfigError(f"regularizer.latent needs param=generator (param is {type(param).__name__}); set regularizer.latent=0 or use param=generator")
        self.param = param

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return self.param.latent_penalty()


def build_priors(
    param: ImageParam,
    denoiser: float = 0.0,
    denoiser_path: str | None = None,
    patch: float = 0.0,
    patch_bank: str | None = None,
    patch_stride: int | None = None,
    patch_bank_size: int = 1024,
    latent: float = 0.0,
) -> list[Regularizer]:
    """The active priors of the ``regularizer`` config group (weights of 0 load nothing)."""
    for key, value in (("denoiser", denoiser), ("patch", patch), ("latent", latent)):
        if not math.isfinite(float(value)) or float(value) < 0:
            raise ConfigError(f"regularizer.{key}={value} must be a finite weight >= 0 (0 turns it off)")
    priors: list[Regularizer] = []
    if denoiser > 0:
        priors.append(DenoiserPrior(denoiser, denoiser_path))
    if patch > 0:
        priors.append(PatchPrior(patch, patch_bank, patch_stride, patch_bank_size))
    if latent > 0:
        priors.append(LatentPrior(latent, param))
    return priors
