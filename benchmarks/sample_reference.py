"""Write scikit-image's bundled sample photos as a reference folder for ``metrics.reference``.

    python benchmarks/sample_reference.py outputs/reference

20 photos (grey ones as RGB), flat, except the two cat photos in ``281_tabby/`` and the
coffee cup in ``967_espresso/`` (ImageNet class indices, so class runs of those classes
compare with their own class). A set this small can rank a unit's exemplars and show
whether an image is photo-like at all; it cannot estimate a feature distribution (FD) or
stand for a class's variety. Needs scikit-image (the ``test`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = (
    "astronaut brick camera cat checkerboard chelsea clock coffee coins colorwheel grass gravel horse "
    "immunohistochemistry moon page retina rocket shepp_logan_phantom text"
).split()
CLASSES = {"cat": "281_tabby", "chelsea": "281_tabby", "coffee": "967_espresso"}


def write_reference(out: Path) -> list[Path]:
    """Save the photos under ``out`` (PNG); returns their paths."""
    paths = []
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.dtype != np.uint8:
            img = (255 * (img.astype(np.float64) - img.min()) / max(np.ptp(img), 1e-9)).astype(np.uint8)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        folder = out / CLASSES.get(name, "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        Image.fromarray(img[..., :3]).save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/reference")
    print(f"{len(write_reference(target))} photos in {target}")
