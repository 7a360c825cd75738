"""Image files in and out: every user image is decoded here, once; every image written, atomically.

Reading: photos a user names (``param.init_image``, a reference or dataset-examples
folder, ``--image``) all go through :func:`open_image`, so each is checked the same way
before a pixel is decoded: a header claiming more than :data:`MAX_PIXELS` (a decompression
bomb, or a scan far larger than any network input) is refused in one line naming the
limit and the key, 16-bit grayscale is scaled from 0..65535 (Pillow's ``convert("RGB")``
clips it to almost white), palette and alpha images are composited onto white, and the
camera's EXIF orientation is applied. A folder is checked whole before a run spends its
steps (:func:`check_images`).

Writing: every file is written to a temporary name in the same folder and renamed into
place, so a crash or a full disk never leaves a half-written PNG or JSON that looks
complete; it gets the mode the process umask gives a new file (a shared results folder
stays readable to the group).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from featviz.errors import DatasetError, FeatvizError

log = logging.getLogger("featviz")

#: The most pixels featviz decodes from one file (8192 x 8192): a header claiming more is
#: refused before decoding. Pillow's own bomb guard only warns below 2 x 89 M pixels.
MAX_PIXELS = 8192 * 8192
LIMIT = f"{MAX_PIXELS / 1e6:.0f} MP (8192x8192)"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
#: What a file that is not a decodable image raises while Pillow reads it.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB, exactly: 16/32-bit gray scaled to its range, alpha onto white."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" and arr.max(initial=0.0) <= 1.0 else 65535.0 if img.mode != "F" else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")  # the palette's transparency becomes alpha
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


@contextmanager
def _header_only() -> Iterator[None]:
    """Pillow's own bomb check off while a header is read: :func:`_opened` checks the size
    itself, against a lower limit, and says the width and height (Pillow's error does not)."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@contextmanager
def _opened(path: str | os.PathLike[str], key: str, error: type[FeatvizError]) -> Iterator[Image.Image]:
    """The file opened lazily, its header checked against :data:`MAX_PIXELS`; any decode error
    inside the ``with`` block (a truncated file) becomes ``error`` naming ``key`` and the file."""
    where = f"{key}: {str(path)!r}"
    try:
        with _header_only():
            img = Image.open(path)
        with img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise error(f"{where} is {w}x{h} pixels ({w * h / 1e6:.0f} MP), more than the {LIMIT} featviz decodes from one file; shrink it")
            yield img
    except FileNotFoundError:
        raise error(f"{where} does not exist; give the path of a PNG or JPEG file") from None
    except DECODE_ERRORS as exc:
        raise error(f"{where} is not a readable image ({type(exc).__name__}: {exc}); give a PNG or JPEG file") from None


def open_image(path: str | os.PathLike[str], key: str, error: type[FeatvizError] = DatasetError) -> Image.Image:
    """Decode the image file ``path`` (named by config key or flag ``key``) to 8-bit RGB.

    Raises ``error`` naming ``key`` and the file when it is missing, not an image, cut short,
    or larger than :data:`MAX_PIXELS` (checked from the header, before decoding).
    """
    with _opened(path, key, error) as img:
        img.load()
        return _to_rgb(ImageOps.exif_transpose(img))


def image_array(path: str | os.PathLike[str], key: str, error: type[FeatvizError] = DatasetError) -> torch.Tensor:
    """``[3, H, W]`` float in [0, 1] of the whole image file (:func:`open_image`)."""
    arr = np.asarray(open_image(path, key, error), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def check_images(paths: Sequence[Path], key: str, error: type[FeatvizError] = DatasetError) -> None:
    """Refuse, naming the first bad file, a list of images any of which cannot be decoded.

    Called before a run's first step, so a corrupt photo in a reference folder costs one
    line at the start rather than the render at the end. JPEGs are decoded at 1/8 scale
    (Pillow's draft mode): enough to find a truncated file, a fraction of a full decode.
    """
    for path in paths:
        with _opened(path, key, error) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()


def find_images(root: str | os.PathLike[str], key: str = "folder") -> list[Path]:
    """All image files under ``root``, sorted, hidden entries left out; other files are skipped with a warning.

    Raises :class:`DatasetError` naming ``key`` when ``root`` is missing, not a folder, or
    holds no file with an image suffix.
    """
    folder = Path(root).expanduser()
    if not folder.exists():
        raise DatasetError(f"{key}: image folder {str(folder)!r} does not exist; pass a folder of JPEG/PNG files (or class sub-folders of them)")
    if not folder.is_dir():
        raise DatasetError(f"{key}: {str(folder)!r} is a file, not a folder; pass the folder that holds the images")
    images: list[Path] = []
    others: list[Path] = []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or not path.is_file():
            continue
        (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    if others:
        shown = ", ".join(str(p.relative_to(folder)) for p in others[:3])
        log.warning("skipping %d file(s) that are not images (%s%s)", len(others), shown, ", ..." if len(others) > 3 else "")
    if not images:
        raise DatasetError(
            f"{key}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {str(folder)!r}; "
            f"point it at a folder of photos or of class sub-folders of photos"
        )
    return images


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


def _umask() -> int:
    """The process umask, read without changing it where Linux says it (``/proc``), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], write: Any) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then rename it into place.

    The file gets ``0o666 & ~umask``, as ``open()`` would give it (``mkstemp`` makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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


def load_png(path: str | os.PathLike[str], key: str = "image") -> torch.Tensor:
    """An image file -> ``[3, H, W]`` float in [0, 1] (:func:`image_array`)."""
    return image_array(path, key)


def load_image(path: str | os.PathLike[str], size: int, key: str = "image", error: type[FeatvizError] = DatasetError) -> torch.Tensor:
    """``[3, size, size]`` in [0, 1]: shorter side resized to ``size``, then a centre crop.

    The same view the network scores, so the pictures saved are what it saw.
    """
    rgb = open_image(path, key, error)
    w, h = rgb.size
    scale = size / min(w, h)
    rgb = rgb.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = rgb.size
    left, top = (w - size) // 2, (h - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
