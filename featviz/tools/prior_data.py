"""Makers of the learned priors' data from a folder of photos: a MACO spectrum, a denoiser, a patch bank."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from featviz.errors import ConfigError, DatasetError
from featviz.images import atomic_write_bytes
from featviz.params.maco import estimate_magnitude
from featviz.regularizers.priors import Denoiser

log = logging.getLogger("featviz")


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


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


def save_state(obj: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    return atomic_write_bytes(out, lambda f: torch.save(obj, f))


def maco_spectrum(images: Sequence[torch.Tensor], size: int, crops: int, generator: torch.Generator) -> torch.Tensor:
    """Average magnitude spectrum ``[3, size, size//2+1]`` of random crops of ``images``."""
    return estimate_magnitude(random_crops(images, size, crops, generator))


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
