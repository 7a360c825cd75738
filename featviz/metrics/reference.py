"""A folder of natural images to score visualizations against (``metrics.reference=FOLDER``).

The folder is torchvision's ImageFolder layout (one sub-folder per class) or flat. A class
sub-folder whose name starts with an ImageNet class index (``281``, ``281_tabby``,
``281-tabby``) holds photos of that class, so a class run is compared with its own class;
other names are unlabelled. Pooled features of a folder are cached per folder content and
model (``$FEATVIZ_CACHE``, default ``~/.cache/featviz``): a sweep of a hundred runs reads
its reference once. The cache key covers every file's name, size and modification time and
the model's name, input size and a fingerprint of its weights, so an edited folder or other
weights never reuse stale features.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from featviz.images import check_images, find_images, load_image
from featviz.metrics.features import pooled_features
from featviz.models import FeatureModel

log = logging.getLogger("featviz")

#: Decoded crops of a folder up to this size stay in memory (see :meth:`ReferenceSet.images`).
KEEP_BYTES = 256 * 2**20
_CLASS_PREFIX = re.compile(r"^(\d+)(?:$|[_\-. ])")


def cache_dir() -> Path:
    """Where pooled reference features are kept (``$FEATVIZ_CACHE`` or ``~/.cache/featviz``)."""
    return Path(os.environ.get("FEATVIZ_CACHE") or Path.home() / ".cache" / "featviz") / "reference"


def _label(path: Path, root: Path) -> int | None:
    parts = path.relative_to(root).parts
    if len(parts) < 2:
        return None
    match = _CLASS_PREFIX.match(parts[0])
    return int(match.group(1)) if match else None


def model_fingerprint(model: FeatureModel) -> str:
    """Name, input size and a hash of the weights: features from other weights never match."""
    digest = hashlib.sha1(f"{model.name}|{model.input_size}".encode())
    for p in model.net.parameters():
        digest.update(p.detach().flatten()[:64].cpu().numpy().tobytes())
        digest.update(str(tuple(p.shape)).encode())
    return digest.hexdigest()


@dataclass
class ReferenceSet:
    """The images of a reference folder: paths, ImageNet labels (or None), loaded on demand."""

    root: Path
    paths: list[Path]
    labels: list[int | None]
    _loaded: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def from_folder(cls, folder: str | Path, key: str = "metrics.reference") -> ReferenceSet:
        """Every image under ``folder`` (non-images skipped with a warning), each checked decodable.

        Raises :class:`~featviz.errors.DatasetError` naming ``key`` and the first bad file
        when the folder has no image or holds one that cannot be decoded: the run that scores
        against it is refused before its first step, not after its last.
        """
        root = Path(folder).expanduser().resolve()
        paths = find_images(root, key)
        check_images(paths, key)
        return cls(root, paths, [_label(p, root) for p in paths])

    def __len__(self) -> int:
        return len(self.paths)

    def images(self, size: int, indices: list[int] | None = None) -> torch.Tensor:
        """``[N, 3, size, size]`` in [0, 1] (centre crops), all or the given ``indices``.

        A folder whose crops fit in :data:`KEEP_BYTES` is decoded once per size and kept:
        every run of a sweep scores against it, and decoding is most of a small pass.
        """
        chosen = list(range(len(self.paths)) if indices is None else indices)
        if size in self._loaded:
            return self._loaded[size][chosen]
        keep = len(self.paths) * 3 * size * size * 4 <= KEEP_BYTES
        loaded = torch.stack([load_image(self.paths[i], size, "metrics.reference") for i in (range(len(self.paths)) if keep else chosen)])
        if not keep:
            return loaded
        self._loaded[size] = loaded
        return loaded[chosen]

    def of_class(self, target: int) -> list[int]:
        """Indices of the photos labelled ``target`` (empty when the folder has none)."""
        return [i for i, label in enumerate(self.labels) if label == target]

    def _key(self, model: FeatureModel) -> str:
        digest = hashlib.sha1(model_fingerprint(model).encode())
        for p in self.paths:
            stat = p.stat()
            digest.update(f"{p.relative_to(self.root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def features(self, model: FeatureModel) -> torch.Tensor:
        """``[N, D]`` pooled features of every image under ``model``, from the cache when it has them."""
        path = cache_dir() / f"{self._key(model)}.pt"
        if path.is_file():
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
                if isinstance(cached, torch.Tensor) and cached.shape[0] == len(self):
                    return cached
            except (OSError, RuntimeError, ValueError) as exc:
                log.warning("ignoring unreadable feature cache %s (%s)", path, exc)
        feats = torch.cat([pooled_features(model, self.images(model.input_size, chunk)) for chunk in index_chunks(len(self), 32)])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(feats, tmp)
            tmp.replace(path)
        except OSError as exc:  # a read-only home: compute again next time, say so once
            log.warning("could not cache reference features in %s (%s); set FEATVIZ_CACHE to a writable folder", path.parent, exc.strerror or exc)
        return feats


def index_chunks(n: int, size: int) -> list[list[int]]:
    """``range(n)`` cut into lists of at most ``size`` indices (batches of reference images)."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]
