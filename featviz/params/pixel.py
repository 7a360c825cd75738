"""One free value per pixel: the plain-gradient baseline of the article."""

from __future__ import annotations

from typing import Any

from torch import nn

from featviz.params.pyramid import LaplacianPyramidImage


class PixelImage(LaplacianPyramidImage):
    """One free value per pixel and channel: the plain (L2) steepest-descent baseline.

    It is the Laplacian pyramid of one level, so it shares its construction; colours are
    not decorrelated unless asked (``decorrelate=True``), as in the article's naive setup.
    """

    def __init__(self, size: int = 128, batch: int = 1, sd: float = 0.01, **colour: Any) -> None:
        """``colour``: ``decorrelate`` (default False), ``value_range``, ``generator``, ``channels`` of :class:`ImageParam`."""
        super().__init__(size, batch, sd, levels=1, **{"decorrelate": False, **colour})

    @property
    def pixels(self) -> nn.Parameter:
        """The image's free values ``[B, C, H, W]`` (what the gradient preconditioners act on)."""
        return self.levels[0]
