"""Learned priors: what natural images look like, learned from a folder of them.

The article's third family of regularization. Each prior is a
:class:`~featviz.regularizers.Regularizer` (a weighted ``penalty(images) -> [B]``), so it
is swept, logged and reported like TV or blur:

* :class:`DenoiserPrior` (Nguyen et al. 2016, "Plug & Play Generative Networks"): a small
  denoising autoencoder ``D`` trained by featviz. For small noise ``D(x) - x`` points
  towards more probable images (Alain & Bengio 2014), so the penalty
  ``0.5 * ||x - stopgrad(D(x))||^2`` adds ``x - D(x)`` to the gradient of the loss, i.e.
  every step also takes a small denoising step.
* :class:`PatchPrior` (Wei et al. 2015): every patch of the image is pulled towards its
  nearest neighbour in a bank of natural-image patches.
* :class:`LatentPrior`: for :class:`~featviz.params_extra.GeneratorImage`, a standard
  normal prior on the latent code.

Commands (``python -m featviz <command> FOLDER ...`` or ``python -m featviz.priors``):
``maco-spectrum`` (the magnitude spectrum of :class:`~featviz.params_extra.MacoImage`),
``train-denoiser`` and ``patch-bank``. The defaults that ship in ``featviz/data/`` were made
with them from public-domain / CC0 photos (``docs/learned_priors.md``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn

from featviz.errors import ConfigError, DatasetError, FeatvizError, WeightsError
from featviz.images import atomic_write_bytes
from featviz.params import ImageParam
from featviz.params_extra import DATA_DIR, GeneratorImage, estimate_magnitude
from featviz.regularizers import FilterPull, Regularizer

log = logging.getLogger("featviz")

DEFAULT_DENOISER = DATA_DIR / "denoiser.pt"
DEFAULT_PATCH_BANK = DATA_DIR / "patch_bank.pt"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
#: Keys of the ``regularizer`` config group that :func:`build_priors` reads.
PRIOR_KEYS = ("denoiser", "denoiser_path", "patch", "patch_bank", "patch_stride", "patch_bank_size", "latent")


# --- image folders --------------------------------------------------------------------


def load_folder(root: str | os.PathLike[str], max_side: int) -> tuple[list[torch.Tensor], list[str]]:
    """Every JPEG/PNG under ``root`` as a uint8 ``[3, H, W]`` tensor, shorter side <= ``max_side``.

    Images are shrunk on load so a folder of large photos fits in memory; crops are taken
    from these copies. Unreadable files are skipped with a warning.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"image folder {str(folder)!r} does not exist or is not a folder; pass a folder of JPEG/PNG files")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    images, names = [], []
    for path in paths:
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            log.warning("skipping unreadable image %s (%s)", path, exc)
            continue
        w, h = rgb.size
        if min(w, h) > max_side:
            scale = max_side / min(w, h)
            rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        images.append(torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1))
        names.append(str(path.relative_to(folder)))
    if not images:
        raise DatasetError(f"no readable .jpg/.jpeg/.png files under {str(folder)!r}; point it at a folder of photos")
    return images, names


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def random_crops(images: Sequence[torch.Tensor], size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random square crops resized to ``size``: ``[count, 3, size, size]`` in [0, 1].

    Each crop picks an image, a side between ``size`` and the image's shorter side (so
    statistics are learned over a range of scales, not one), a position, and a mirror flip.
    """
    crops = []
    for _ in range(int(count)):
        img = images[_randint(0, len(images) - 1, generator)]
        h, w = img.shape[-2:]
        short = min(h, w)
        side = _randint(min(size, short), short, generator)
        y, x = _randint(0, h - side, generator), _randint(0, w - side, generator)
        crop = img[:, y : y + side, x : x + side].float()[None] / 255.0
        if side != size:
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
        if _randint(0, 1, generator):
            crop = crop.flip(-1)
        crops.append(crop[0].clamp(0.0, 1.0))
    return torch.stack(crops)


def _save(obj: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    return atomic_write_bytes(out, lambda f: torch.save(obj, f))


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


# --- MACO spectrum --------------------------------------------------------------------


def maco_spectrum(images: Sequence[torch.Tensor], size: int, crops: int, generator: torch.Generator) -> torch.Tensor:
    """Average magnitude spectrum ``[3, size, size//2+1]`` of random crops of ``images``."""
    return estimate_magnitude(random_crops(images, size, crops, generator))


# --- denoiser -------------------------------------------------------------------------


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


def train_denoiser(
    images: Sequence[torch.Tensor],
    size: int = 64,
    steps: int = 1000,
    batch: int = 16,
    sigma: float = 0.1,
    lr: float = 2e-3,
    width: int = 24,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[Denoiser, list[float]]:
    """Train a :class:`Denoiser` on random ``size`` px crops with Gaussian noise ``sigma``.

    Returns the net and the loss (MSE to the clean crop) of every step. Adam with a short
    warm-up and a cosine decay to 0; every crop and noise sample comes from one generator seeded with
    ``seed``, so the same call gives the same weights on CPU.
    """
    if int(steps) < 1 or int(batch) < 1 or int(size) < 8:
        raise ConfigError(f"steps={steps}, batch={batch}, size={size}: use steps >= 1, batch >= 1, size >= 8")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"sigma={sigma} must be > 0 (0.1 of the [0, 1] range is the default)")
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(int(seed))
    # channels_last: measured 1.7x faster convolution backward on CPU at 64 px.
    net = Denoiser(width).reset(generator).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = int(steps)
    warmup = max(10, steps // 10)
    # Linear warm-up: Adam's first steps move every weight by about lr at once, which from
    # the identity start throws the output far off; then a cosine decay to 0.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * k / steps)))
    losses: list[float] = []
    bar = tqdm(range(int(steps)), desc="train-denoiser", unit="step", disable=None if progress is None else not progress, dynamic_ncols=True)
    for _ in bar:
        clean = random_crops(images, size, batch, generator).contiguous(memory_format=torch.channels_last)
        noisy = clean + torch.randn(clean.shape, generator=generator) * sigma
        loss = F.mse_loss(net(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if len(losses) % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / 10:.5f}")
    return net.eval(), losses


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


# --- patch prior ----------------------------------------------------------------------


def extract_patches(images: Sequence[torch.Tensor], size: int, patch: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``patch`` x ``patch`` patches of ``size`` px crops: uint8 ``[count, 3, p, p]``.

    ``size`` is the side of the images the bank is for (``param.size``): patches are taken
    at the scale the rendered image has, from crops of that side (16 patches per crop).
    """
    if not 1 <= int(patch) <= int(size):
        raise ConfigError(f"patch={patch} must be between 1 and size={size}")
    per_crop = 16
    crops = random_crops(images, size, math.ceil(count / per_crop), generator)
    out = []
    for crop in crops:
        for _ in range(per_crop):
            y, x = _randint(0, size - patch, generator), _randint(0, size - patch, generator)
            out.append(crop[:, y : y + patch, x : x + patch])
    return (torch.stack(out[: int(count)]) * 255).round().to(torch.uint8)


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


# --- latent prior ---------------------------------------------------------------------


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


# --- commands -------------------------------------------------------------------------

COMMANDS = ("maco-spectrum", "train-denoiser", "patch-bank")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="featviz", description="Compute the data of the learned priors from a folder of JPEG/PNG images.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, size: int) -> None:
        p.add_argument("folder", type=Path, help="folder of .jpg/.jpeg/.png images (searched recursively)")
        p.add_argument("--out", type=Path, required=True, help="file to write (a torch .pt)")
        p.add_argument("--size", type=int, default=size, help=f"side of the crops in pixels (default {size})")
        p.add_argument("--seed", type=int, default=0, help="seeds every crop (and the training)")

    p = sub.add_parser("maco-spectrum", help="average magnitude spectrum for param=maco")
    common(p, 128)
    p.add_argument("--crops", type=int, default=512, help="random crops averaged (default 512)")
    p = sub.add_parser("train-denoiser", help="train the denoising autoencoder of regularizer.denoiser")
    common(p, 64)
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000, a few minutes on CPU)")
    p.add_argument("--batch", type=int, default=16, help="crops per step (default 16)")
    p.add_argument("--sigma", type=float, default=0.1, help="noise standard deviation on the [0, 1] scale (default 0.1)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate, cosine-decayed to 0 (default 0.002)")
    p.add_argument("--width", type=int, default=24, help="channels of the first layer (default 24)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = sub.add_parser("patch-bank", help="bank of natural-image patches for regularizer.patch")
    common(p, 128)
    p.add_argument("--patch", type=int, default=6, help="patch side in pixels (default 6)")
    p.add_argument("--count", type=int, default=1024, help="patches kept (default 1024)")
    return ap


def run_command(args: argparse.Namespace) -> Path:
    """Compute and save what ``args.command`` asks for; returns the file written."""
    if args.size < 8:
        raise ConfigError(f"--size {args.size} is too small; use 8 or more pixels")
    images, names = load_folder(args.folder, max_side=4 * args.size)
    generator = torch.Generator().manual_seed(args.seed)
    meta = {"kind": args.command, "size": args.size, "seed": args.seed, "images": names}
    if args.command == "maco-spectrum":
        if args.crops < 1:
            raise ConfigError(f"--crops {args.crops} must be >= 1")
        mag = maco_spectrum(images, args.size, args.crops, generator)
        return _save({**meta, "crops": args.crops, "magnitude": mag}, args.out)
    if args.command == "train-denoiser":
        net, losses = train_denoiser(images, args.size, args.steps, args.batch, args.sigma, args.lr, args.width, args.seed, progress=not args.no_progress)
        tail = losses[-max(1, len(losses) // 10) :]
        print(f"loss: first step {losses[0]:.5f}, last 10% of steps {sum(tail) / len(tail):.5f} (noise alone: {args.sigma**2:.5f})")
        state = {**meta, "width": net.width, "sigma": args.sigma, "steps": args.steps, "batch": args.batch, "losses": losses, "state_dict": net.state_dict()}
        return _save(state, args.out)
    if args.count < 1:
        raise ConfigError(f"--count {args.count} must be >= 1")
    patches = extract_patches(images, args.size, args.patch, args.count, generator)
    return _save({**meta, "patch": args.patch, "patches": patches}, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """``featviz maco-spectrum|train-denoiser|patch-bank FOLDER --out FILE ...``; returns the exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        written = run_command(args)
    except FeatvizError as exc:
        print(f"featviz {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
