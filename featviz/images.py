"""Turning image tensors into files, atomically.

Every file is written to a temporary name in the same folder and renamed into place, so
a crash or a full disk never leaves a half-written PNG or JSON that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> ``[H, W, C]`` uint8 (rounded, clipped); ``[H, W]`` for one channel.

    Images of a network with other input channels are shown by their first channel (2) or
    their first three (5 and more, multispectral), as a false-colour picture.
    """
    arr = image.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    if arr.shape[0] < 3:
        return arr[0].numpy()
    return arr[: 4 if arr.shape[0] == 4 else 3].permute(1, 2, 0).numpy()


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile ``[B, 3, H, W]`` into one ``[3, H', W']`` image on a white background."""
    b, c, h, w = images.shape
    nrow = nrow or min(b, 8)
    rows = (b + nrow - 1) // nrow
    out = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad, dtype=images.dtype)
    for i in range(b):
        r, col = divmod(i, nrow)
        out[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = images[i].cpu()
    return out


def atomic_write_bytes(path: str | os.PathLike[str], write: Any) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(image: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Save ``[3, H, W]`` (or a batch, tiled) as PNG, atomically."""
    if image.dim() == 4:
        image = grid(image) if image.shape[0] > 1 else image[0]
    pil = Image.fromarray(to_uint8(image))
    return atomic_write_bytes(path, lambda f: pil.save(f, format="PNG"))


def save_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    data = json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=True).encode()
    return atomic_write_bytes(path, lambda f: f.write(data))


def load_png(path: str | os.PathLike[str]) -> torch.Tensor:
    """PNG -> ``[3, H, W]`` float in [0, 1]."""
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike[str], size: int) -> torch.Tensor:
    """``[3, size, size]`` in [0, 1]: shorter side resized to ``size``, then a centre crop.

    The same view the network scores, so the pictures saved are what it saw.
    """
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    w, h = rgb.size
    scale = size / min(w, h)
    rgb = rgb.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = rgb.size
    left, top = (w - size) // 2, (h - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
