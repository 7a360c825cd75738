"""``featviz maco-spectrum | train-denoiser | patch-bank FOLDER --out FILE``: the learned priors' data.

``maco-spectrum`` is the magnitude spectrum of :class:`~featviz.params.MacoImage`,
``train-denoiser`` the denoising autoencoder of :class:`~featviz.regularizers.DenoiserPrior`,
``patch-bank`` the patches of :class:`~featviz.regularizers.PatchPrior`; the library functions
are in :mod:`featviz.tools.prior_data`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from featviz.errors import ConfigError
from featviz.tools.prior_data import (
    extract_patches,
    load_folder,
    maco_spectrum,
    save_state,
    train_denoiser,
)


def _parser(prog: str, size: int, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("folder", type=Path, help="folder of .jpg/.jpeg/.png images (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="file to write (a torch .pt)")
    p.add_argument("--size", type=int, default=size, help=f"side of the crops in pixels (default {size})")
    p.add_argument("--seed", type=int, default=0, help="seeds every crop (and the training)")
    return p


def maco_spectrum_parser(prog: str) -> argparse.ArgumentParser:
    p = _parser(prog, 128, "Average magnitude spectrum of random crops, for param=maco (param.spectrum=FILE).")
    p.add_argument("--crops", type=int, default=512, help="random crops averaged (default 512)")
    return p


def train_denoiser_parser(prog: str) -> argparse.ArgumentParser:
    p = _parser(prog, 64, "Train the denoising autoencoder of regularizer.denoiser (regularizer.denoiser_path=FILE).")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000, a few minutes on CPU)")
    p.add_argument("--batch", type=int, default=16, help="crops per step (default 16)")
    p.add_argument("--sigma", type=float, default=0.1, help="noise standard deviation on the [0, 1] scale (default 0.1)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate, cosine-decayed to 0 (default 0.002)")
    p.add_argument("--width", type=int, default=24, help="channels of the first layer (default 24)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def patch_bank_parser(prog: str) -> argparse.ArgumentParser:
    p = _parser(prog, 128, "Bank of natural-image patches for regularizer.patch (regularizer.patch_bank=FILE).")
    p.add_argument("--patch", type=int, default=6, help="patch side in pixels (default 6)")
    p.add_argument("--count", type=int, default=1024, help="patches kept (default 1024)")
    return p


def _written(state: dict[str, Any], out: Path) -> str:
    return f"wrote {save_state(state, out)}"


def run(args: argparse.Namespace) -> str:
    """Compute and save what ``args.command`` asks for; says which file it wrote."""
    if args.size < 8:
        raise ConfigError(f"--size {args.size} is too small; use 8 or more pixels")
    images, names = load_folder(args.folder, max_side=4 * args.size)
    generator = torch.Generator().manual_seed(args.seed)
    meta = {"kind": args.command, "size": args.size, "seed": args.seed, "images": names}
    if args.command == "maco-spectrum":
        if args.crops < 1:
            raise ConfigError(f"--crops {args.crops} must be >= 1")
        mag = maco_spectrum(images, args.size, args.crops, generator)
        return _written({**meta, "crops": args.crops, "magnitude": mag}, args.out)
    if args.command == "train-denoiser":
        net, losses = train_denoiser(images, args.size, args.steps, args.batch, args.sigma, args.lr, args.width, args.seed, progress=not args.no_progress)
        tail = losses[-max(1, len(losses) // 10) :]
        print(f"loss: first step {losses[0]:.5f}, last 10% of steps {sum(tail) / len(tail):.5f} (noise alone: {args.sigma**2:.5f})")
        state = {**meta, "width": net.width, "sigma": args.sigma, "steps": args.steps, "batch": args.batch, "losses": losses, "state_dict": net.state_dict()}
        return _written(state, args.out)
    if args.count < 1:
        raise ConfigError(f"--count {args.count} must be >= 1")
    patches = extract_patches(images, args.size, args.patch, args.count, generator)
    return _written({**meta, "patch": args.patch, "patches": patches}, args.out)
