"""Stochastic transformations applied before each forward pass (transformation robustness).

A transform is ``callable(images, generator) -> images``. Randomness comes only from the
``torch.Generator`` the render loop passes in, so a seed fixes every draw.

Scale and rotate are affine maps; :class:`Compose` multiplies consecutive affine maps into
one matrix and resamples once, which is both faster and sharper than one resample each.
With ``fuse_geometry=True`` it also folds the jitter crops and the final resize into that
one resample (a crop and a bilinear resize are affine maps too), so the whole
jitter-scale-rotate-jitter-resize chain costs a single ``grid_sample`` at the model's input
size: same random draws, same geometry, one interpolation instead of two.

:class:`RandomCrops` turns each image into several views (one batch ``crops`` times larger,
view-major); the render loop scores each block of views as one batch and averages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from featviz.errors import ConfigError


def _uniform(generator: torch.Generator | None, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


class Transform:
    """Base class; subclasses implement ``__call__(images, generator)``."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


Size = tuple[int, int]


class GeometricTransform(Transform):
    """A transform that is an affine map of normalized coordinates, possibly changing the size.

    ``plan`` draws its random numbers exactly as ``__call__`` does and returns the per-image
    3x3 map (output coords -> input coords) and the output size, so :class:`Compose` can
    fuse several of them into one resample.
    """

    def plan(self, n: int, size: Size, generator: torch.Generator | None) -> tuple[torch.Tensor, Size]:
        raise NotImplementedError


class AffineTransform(GeometricTransform):
    """A random 2x3 affine map per image, in normalized coordinates; fusable by Compose."""

    def matrices(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def plan(self, n: int, size: Size, generator: torch.Generator | None) -> tuple[torch.Tensor, Size]:
        return self.matrices(n, generator), size

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return warp(images, self.matrices(images.shape[0], generator))


def warp(images: torch.Tensor, mats: torch.Tensor, size: Size | None = None) -> torch.Tensor:
    """Resample ``images`` by per-image 3x3 affine ``mats`` (output coords -> input coords).

    ``size`` is the output ``(height, width)``; the input's by default.
    """
    # The maps are drawn on the CPU generator; a non-blocking copy keeps the GPU queue running
    # (a plain copy to CUDA would wait for every queued kernel, once per step).
    theta = mats[:, :2, :].to(device=images.device, dtype=images.dtype, non_blocking=True)
    out = [*images.shape[:2], *(size or images.shape[-2:])]
    grid = F.affine_grid(theta, out, align_corners=False)
    return _grid_sample(images, grid)


def _grid_sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear ``grid_sample`` (reflection at the borders) that keeps every CPU thread busy.

    PyTorch's CPU kernel parallelizes over the batch only, so one image runs on one thread
    while the network beside it uses all of them (docs/performance.md measures the cost).
    With fewer images than threads the output rows are cut into as many bands as threads
    and sampled as a batch (each band from its own view of the input); the input gradient
    then sums the bands' gradients, which changes float rounding, not values.
    """
    n, rows = images.shape[0], grid.shape[1]
    bands = torch.get_num_threads() // n if images.device.type == "cpu" else 1
    while bands > 1 and rows % bands:
        bands -= 1
    if bands < 2:
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    c, h, w = images.shape[1:]
    inputs = images.unsqueeze(1).expand(n, bands, c, h, w).reshape(n * bands, c, h, w)
    out = F.grid_sample(inputs, grid.reshape(n * bands, rows // bands, *grid.shape[2:]), mode="bilinear",
                        padding_mode="reflection", align_corners=False)
    return out.reshape(n, bands, c, rows // bands, -1).transpose(1, 2).reshape(n, c, rows, -1)


class Pad(Transform):
    """Pad by ``pad`` pixels so later jitter/rotation does not expose only the border."""

    def __init__(self, pad: int, mode: str = "reflect", value: float = 0.5) -> None:
        if pad < 0:
            raise ConfigError(f"transforms pad={pad} must be >= 0")
        if mode not in ("constant", "reflect", "replicate"):
            raise ConfigError(f"pad mode {mode!r}; use constant, reflect or replicate")
        self.pad, self.mode, self.value = int(pad), mode, float(value)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pad == 0:
            return images
        if self.mode == "constant":
            return F.pad(images, [self.pad] * 4, mode="constant", value=self.value)
        return F.pad(images, [self.pad] * 4, mode=self.mode)


class Jitter(GeometricTransform):
    """Random crop that shifts the image by up to ``pixels`` in x and y (Lucid's jitter).

    Cropping needs no resampling, so jitter adds no blur; the image shrinks by ``pixels``.
    """

    def __init__(self, pixels: int) -> None:
        if pixels < 0:
            raise ConfigError(f"jitter={pixels} must be >= 0 pixels")
        self.pixels = int(pixels)

    def _offsets(self, h: int, w: int, generator: torch.Generator | None) -> tuple[int, int]:
        if self.pixels >= min(h, w):
            raise ConfigError(f"jitter={self.pixels} is larger than the {h}x{w} image; lower it")
        dx, dy = (int(v) for v in torch.randint(0, self.pixels + 1, (2,), generator=generator))
        return dx, dy

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pixels == 0:
            return images
        h, w = images.shape[-2:]
        dx, dy = self._offsets(h, w, generator)
        return images[..., dy : dy + h - self.pixels, dx : dx + w - self.pixels]

    def plan(self, n: int, size: Size, generator: torch.Generator | None) -> tuple[torch.Tensor, Size]:
        h, w = size
        m = torch.eye(3).repeat(n, 1, 1)
        if self.pixels == 0:
            return m, size
        dx, dy = self._offsets(h, w, generator)
        j = self.pixels
        # Output pixel centres of the (w - j)-wide crop, in the uncropped image's [-1, 1] frame.
        m[:, 0, 0], m[:, 0, 2] = (w - j) / w, (2 * dx - j) / w
        m[:, 1, 1], m[:, 1, 2] = (h - j) / h, (2 * dy - j) / h
        return m, (h - j, w - j)


class RandomScale(AffineTransform):
    """Zoom by a factor drawn uniformly from ``[low, high]`` (1.1 = 10 % larger content)."""

    def __init__(self, low: float, high: float) -> None:
        if not (0 < low <= high):
            raise ConfigError(f"scale range ({low}, {high}) must satisfy 0 < low <= high")
        self.low, self.high = float(low), float(high)

    def matrices(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        s = 1.0 / _uniform(generator, n, self.low, self.high)
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0] = s
        m[:, 1, 1] = s
        return m


class RandomRotate(AffineTransform):
    """Rotate by an angle drawn uniformly from ``[-degrees, degrees]``."""

    def __init__(self, degrees: float) -> None:
        if degrees < 0:
            raise ConfigError(f"rotate={degrees} must be >= 0 degrees")
        self.degrees = float(degrees)

    def matrices(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        a = _uniform(generator, n, -self.degrees, self.degrees) * (math.pi / 180.0)
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0], m[:, 0, 1] = torch.cos(a), -torch.sin(a)
        m[:, 1, 0], m[:, 1, 1] = torch.sin(a), torch.cos(a)
        return m


class Resize(GeometricTransform):
    """Bilinear resize to ``size`` (the model's training resolution)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def plan(self, n: int, size: Size, generator: torch.Generator | None) -> tuple[torch.Tensor, Size]:
        # With align_corners=False a bilinear resize is the identity map of [-1, 1] coordinates.
        return torch.eye(3).repeat(n, 1, 1), (self.size, self.size)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.shape[-1] == self.size and images.shape[-2] == self.size:
            return images
        return F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)


class Compose(Transform):
    """Apply transforms in order, fusing runs of affine transforms into one resample.

    With ``fuse_geometry`` the runs also take in jitter crops and resizes, so a standard
    stack resamples once, straight to the model's input size.
    """

    def __init__(self, transforms: Sequence[Transform] = (), fuse_geometry: bool = False) -> None:
        self.transforms = list(transforms)
        self.fuse_geometry = bool(fuse_geometry)

    def _fusable(self, t: Transform) -> bool:
        return isinstance(t, AffineTransform) or (self.fuse_geometry and isinstance(t, GeometricTransform))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        pending: torch.Tensor | None = None
        size: Size = (images.shape[-2], images.shape[-1])
        count = images.shape[0]  # images after the pending maps (RandomCrops multiplies them)
        for t in self.transforms:
            if self._fusable(t):
                assert isinstance(t, GeometricTransform)
                m, size = t.plan(count, size, generator)
                # Later transforms act on the output of earlier ones: in sampling-grid terms the
                # earlier map is applied last, hence the right-multiplication order.
                pending = m if pending is None else _repeat(pending, m.shape[0]) @ m
                count = m.shape[0]
                continue
            if pending is not None:
                images, pending = warp(_repeat(images, count), pending, size), None
            images = t(images, generator)
            size, count = (images.shape[-2], images.shape[-1]), images.shape[0]
        identity = pending is not None and count == images.shape[0] and torch.equal(pending, torch.eye(3).expand_as(pending))
        if pending is not None and not (size == tuple(images.shape[-2:]) and identity):
            images = warp(_repeat(images, count), pending, size)
        return images


def _repeat(t: torch.Tensor, count: int) -> torch.Tensor:
    """``t`` stacked view-major to ``count`` rows (row ``k * len(t) + b`` is copy ``k`` of ``t[b]``)."""
    return t if t.shape[0] == count else t.repeat(count // t.shape[0], *[1] * (t.dim() - 1))


class RandomCrops(GeometricTransform):
    """``crops`` random square-aspect crops of every image, each zoomed back to the image's size.

    Why: one update then averages the gradient over many views of the image (MACO's
    reference implementations use 6-32 crops per step), so structure that only one crop
    position rewards averages out and the image must work at every place and scale, which
    is what keeps high frequencies down. The crops are one batch of ``crops * B`` images,
    view-major (crop ``k`` of image ``b`` is row ``k * B + b``), so every block of ``B`` rows
    is a whole batch for objectives that read batch positions.

    A crop's side is a fraction of the image side drawn from ``size = (low, high)``; its
    centre is drawn so the crop stays inside the image. ``end``, if given, is the range at
    the run's last step, reached linearly from ``size`` as :attr:`progress` goes from 0 to 1
    (:class:`featviz.schedules.CropSchedule` sets it each step).
    """

    def __init__(self, crops: int, size: Sequence[float] = (0.5, 1.0), end: Sequence[float] | None = None) -> None:
        if int(crops) < 1:
            raise ConfigError(f"transforms.crops={crops} must be >= 1 (0 in the config leaves crops out)")
        self.crops = int(crops)
        self.size = _fraction_range(size, "transforms.crop_size")
        self.end = _fraction_range(end, "transforms.crop_size_end") if end is not None else None
        self.progress = 0.0

    def size_range(self) -> tuple[float, float]:
        """The crop-side range at the current :attr:`progress`."""
        if self.end is None:
            return self.size
        p = min(max(self.progress, 0.0), 1.0)
        return (self.size[0] + p * (self.end[0] - self.size[0]), self.size[1] + p * (self.end[1] - self.size[1]))

    def plan(self, n: int, size: Size, generator: torch.Generator | None) -> tuple[torch.Tensor, Size]:
        rows = n * self.crops
        low, high = self.size_range()
        side = _uniform(generator, rows, low, high)
        centre = _uniform(generator, 2 * rows, -1.0, 1.0).view(2, rows) * (1.0 - side)
        m = torch.eye(3).repeat(rows, 1, 1)
        m[:, 0, 0], m[:, 1, 1] = side, side
        m[:, 0, 2], m[:, 1, 2] = centre[0], centre[1]
        return m, size

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        m, size = self.plan(images.shape[0], (images.shape[-2], images.shape[-1]), generator)
        return warp(_repeat(images, m.shape[0]), m, size)


def _fraction_range(value: Sequence[float], key: str) -> tuple[float, float]:
    """``[low, high]`` with ``0 < low <= high <= 1``, or a one-line error naming ``key``."""
    pair = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair) or not 0 < pair[0] <= pair[1] <= 1:
        raise ConfigError(f"{key}={value!r} must be [low, high] with 0 < low <= high <= 1 (fractions of the image side), e.g. [0.5, 1.0]")
    return float(pair[0]), float(pair[1])


def build_transforms(
    pad: int = 0,
    pad_mode: str = "reflect",
    jitter: int = 0,
    scale: Sequence[float] | None = None,
    rotate: float = 0.0,
    jitter_after: int = 0,
    resize: int | None = None,
    fuse_geometry: bool = False,
    crops: int = 0,
    crop_size: Sequence[float] = (0.5, 1.0),
    crop_size_end: Sequence[float] | None = None,
) -> Compose:
    """The configurable stack: pad, jitter, scale, rotate, a second jitter, crops, resize.

    Any value at 0 / None leaves that stage out, so one sweep can switch each on alone.
    The article's "standard" stack is ``pad=12, jitter=8, scale=(0.9, 1.1), rotate=10,
    jitter_after=4``. ``crops`` > 0 adds :class:`RandomCrops` (that many views per image).
    ``fuse_geometry`` resamples once for everything after the pad.
    """
    stages: list[Transform] = []
    if pad:
        stages.append(Pad(pad, mode=pad_mode))
    if jitter:
        stages.append(Jitter(jitter))
    if scale is not None:
        pair = list(scale) if isinstance(scale, Sequence) and not isinstance(scale, str) else [scale]
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair):
            raise ConfigError(f"transforms.scale={scale!r} must be [low, high], two finite numbers (or null for none)")
        if tuple(pair) != (1.0, 1.0):
            stages.append(RandomScale(*pair))
    if rotate:
        stages.append(RandomRotate(rotate))
    if jitter_after:
        stages.append(Jitter(jitter_after))
    if crops:
        stages.append(RandomCrops(crops, crop_size, crop_size_end))
    if resize:
        stages.append(Resize(resize))
    return Compose(stages, fuse_geometry=fuse_geometry)
