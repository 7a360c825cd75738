"""The transparency terms of :class:`featviz.params.rgba.RGBAImage`: the alpha penalty and the saved alpha map."""

from __future__ import annotations

import torch

from featviz.callbacks import Callback, RenderContext, RenderResult
from featviz.errors import ConfigError
from featviz.params.base import ImageParam
from featviz.params.rgba import RGBAImage
from featviz.regularizers.base import Regularizer


def _rgba(param: ImageParam, key: str) -> RGBAImage:
    if not isinstance(param, RGBAImage):
        raise ConfigError(f"{key} acts on the alpha channel of param=rgba; use param=rgba or set {key}=0")
    return param


class AlphaPenalty(Regularizer):
    """``weight * mean(alpha)`` per image: opacity costs, so only what the unit needs stays opaque.

    The composited images the loop passes in cannot tell alpha apart, so the penalty reads
    the parameterization's own alpha.
    """

    name = "alpha"

    def __init__(self, weight: float, param: ImageParam) -> None:
        super().__init__(weight)
        self.param = _rgba(param, "regularizer.alpha")

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return self.param.rgba()[:, self.param.channels :].flatten(1).mean(1)


class AlphaImages(Callback):
    """At the end, hands the writer ``final_rgba`` (colours with their alpha) and ``final_alpha``.

    They go in ``ctx.extra["images"]``, which :class:`featviz.writer.RunWriter` saves as
    ``<name>.png``; ``final.png`` stays the composite the network last saw.
    """

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        param = _rgba(ctx.param, "param")
        with torch.no_grad():
            rgba = param.rgba().cpu()
        ctx.extra.setdefault("images", {}).update(final_rgba=rgba, final_alpha=rgba[:, param.channels :])
