"""Starting a parameterization from a photo (feature accentuation, Hamblin et al. 2024).

Why: started from noise, a render shows what a unit wants anywhere; started from a photo
and kept near it (:class:`featviz.regularizers.accentuation.PhotoDistance`), it shows what
in *this* photo drives the unit. The photo is put into the parameter exactly, by inverting
the parameterization's tail (the [0, 1] squash, then the colour decorrelation, then the
parameter's own decoding), so zero steps return the photo.
"""

from __future__ import annotations

import os

import torch

from featviz.errors import ConfigError
from featviz.images import load_image
from featviz.params.base import ImageParam
from featviz.params.fourier import FFTImage, SharedFFTImage
from featviz.params.pyramid import LaplacianPyramidImage

# A sigmoid reaches neither 0 nor 1: photo values are kept this far inside (below 1/255).
_EDGE = 1e-3


def load_photo(path: str | os.PathLike[str], size: int, channels: int = 3) -> torch.Tensor:
    """``[1, channels, size, size]`` in [0, 1] from an image file (a centre crop of it)."""
    photo = load_image(path, size, "param.init_image", ConfigError)
    if channels == 3:
        return photo[None]
    if channels == 1:
        return photo.mean(0, keepdim=True)[None]
    raise ConfigError(f"param.init_image starts an RGB or grayscale image; the model takes {channels} channels: leave param.init_image=null")


def unsquash(param: ImageParam, photo: torch.Tensor) -> torch.Tensor:
    """The pre-squash values whose :meth:`ImageParam.to_rgb` is ``photo``."""
    if param.value_range == "sigmoid":
        p = photo.clamp(_EDGE, 1 - _EDGE)
        t = torch.log(p) - torch.log1p(-p)
    else:
        t = photo - 0.5
    if param.decorrelate:
        t = torch.einsum("bchw,dc->bdhw", t, torch.linalg.inv(param.color).to(t))
    return t


@torch.no_grad()
def start_from(param: ImageParam, photo: torch.Tensor) -> ImageParam:
    """Set ``param`` so every image of its batch is ``photo`` ``[1, C, S, S]``; returns ``param``."""
    if type(param) not in (FFTImage, SharedFFTImage) and not isinstance(param, LaplacianPyramidImage):
        raise ConfigError(
            f"param.init_image cannot start a {type(param).__name__}; use param=fft, shared_fft, pixel or laplacian "
            f"(or param.init_image=null)"
        )
    if photo.shape[1:] != (param.channels, param.size, param.size):
        raise ConfigError(f"the init image is {tuple(photo.shape[1:])}, the param draws {(param.channels, param.size, param.size)}")
    t = unsquash(param, photo.to(next(param.parameters()).device)).expand(param.batch, -1, -1, -1)
    if isinstance(param, LaplacianPyramidImage):
        for level in param.levels:
            level.zero_()
        param.levels[0].copy_(t)
        return param
    spec = torch.fft.rfft2(t * 4.0, norm="ortho") / param.scale
    param.spectrum.copy_(torch.stack([spec.real, spec.imag]))
    for component in [*getattr(param, "shared", []), *getattr(param, "blended", [])]:
        component.zero_()
    return param
