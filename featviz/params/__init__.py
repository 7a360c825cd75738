"""Image parameterizations: what the optimizer actually changes.

Every parameterization is an :class:`ImageParam`, an ``nn.Module`` whose ``forward()``
returns ``[B, C, H, W]`` in [0, 1] (``C`` is 3, or the network's input channels for the kinds
that take ``channels``). Choosing one is choosing a preconditioner (article,
"Preconditioning and Parameterization"): ``pixel`` is the plain baseline, ``fourier`` the
article's decorrelated space, ``pyramid``, ``cppn``, ``maco`` (``maco_vivid``), ``rgba`` and ``generator``
later work (:mod:`featviz.params.init_image` starts the invertible ones from a photo).
:data:`PARAMS` names them for configs; :func:`build_param` builds one by name.
"""

from __future__ import annotations

import torch

from featviz.errors import ConfigError
from featviz.params.base import COLOR_CORRELATION_SVD_SQRT, ImageParam, ValueRange
from featviz.params.cppn import CPPNImage
from featviz.params.fourier import FFTImage, SharedFFTImage
from featviz.params.generator import GeneratorImage
from featviz.params.maco import MacoImage
from featviz.params.maco_vivid import VividMacoImage
from featviz.params.pixel import PixelImage
from featviz.params.pyramid import LaplacianPyramidImage
from featviz.params.rgba import RGBAImage

__all__ = [
    "COLOR_CORRELATION_SVD_SQRT", "CPPNImage", "FFTImage", "GeneratorImage", "ImageParam", "LaplacianPyramidImage",
    "MacoImage", "PARAMS", "PixelImage", "RGBAImage", "SharedFFTImage", "ValueRange", "VividMacoImage", "build_param",
]

PARAMS: dict[str, type[ImageParam]] = {
    "pixel": PixelImage,
    "fft": FFTImage,
    "shared_fft": SharedFFTImage,
    "laplacian": LaplacianPyramidImage,
    "cppn": CPPNImage,
    "maco": MacoImage,
    "maco_vivid": VividMacoImage,
    "generator": GeneratorImage,
    "rgba": RGBAImage,
}


def build_param(kind: str = "fft", generator: torch.Generator | None = None, **kwargs: object) -> ImageParam:
    """Build a parameterization by name (a key of :data:`PARAMS`) with its options."""
    if kind not in PARAMS:
        raise ConfigError(f"unknown param kind {kind!r}; use one of {sorted(PARAMS)}")
    return PARAMS[kind](generator=generator, **kwargs)  # type: ignore[arg-type]
