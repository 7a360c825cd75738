"""The end-of-run metrics callback: image metrics, unseen views and transfer added to result.final."""

from __future__ import annotations

import logging

import torch

from featviz.callbacks import Callback, RenderContext, RenderResult
from featviz.errors import ConfigError
from featviz.metrics.image import (
    check_cutoff,
    check_fraction,
    image_metrics,
    steps_to_fraction,
)
from featviz.metrics.views import (
    UnseenViews,
    class_scores,
    class_targets,
    resize_square,
    view_metrics,
)
from featviz.models import LOGITS, FeatureModel

log = logging.getLogger("featviz")


class MetricsCallback(Callback):
    """Adds the metrics of the final image to ``result.final`` in ``on_end``.

    Place it *before* the writer and the loggers in the callback list: they read
    ``result.final`` in their own ``on_end``.

    Args:
        views: number of unseen random views for ``robust/*`` (0 = leave them out).
        view_seed: seeds the views; the same seed gives every run of a sweep the same views,
            so their ``robust/*`` numbers compare like for like.
        view_transform: how a view is made.
        eval_model: the independent network for ``transfer/*`` (class objectives only).
        hf_cutoff: cut-off of ``hf_share`` in cycles per pixel.
        progress_fraction: the fraction of ``steps_to_<percent>``.
    """

    def __init__(
        self,
        views: int = 16,
        view_seed: int = 0,
        view_transform: UnseenViews | None = None,
        eval_model: FeatureModel | None = None,
        hf_cutoff: float = 0.25,
        progress_fraction: float = 0.9,
    ) -> None:
        if int(views) < 0:
            raise ConfigError(f"metrics.views={views} must be >= 0 (0 leaves out robust/*)")
        check_cutoff(hf_cutoff)  # now, not after the run
        check_fraction(progress_fraction)
        self.views = int(views)
        self.view_seed = int(view_seed)
        self.view_transform = view_transform or UnseenViews()
        self.eval_model = eval_model
        self.hf_cutoff = float(hf_cutoff)
        self.progress_fraction = float(progress_fraction)

    def compute(self, ctx: RenderContext, result: RenderResult) -> dict[str, float]:
        images = result.images.to(ctx.device)
        out = {"objective_clean": float(ctx.evaluate(images).mean())}
        out.update(image_metrics(result.images, self.hf_cutoff))
        out[f"steps_to_{round(self.progress_fraction * 100)}"] = steps_to_fraction(result.history, self.progress_fraction)
        if self.views:
            gen = torch.Generator().manual_seed(self.view_seed)
            out.update(view_metrics(ctx.model, ctx.objective, images, self.view_transform, self.views, gen))
        targets = class_targets(ctx.objective, images.shape[0])
        if any(t is not None for t in targets):
            with torch.no_grad():
                clean = ctx.model(resize_square(images, ctx.model.input_size), [LOGITS])[LOGITS]
            out.update({f"clean/{k}": v for k, v in class_scores(clean, targets).items()})
            if self.eval_model is not None:
                out.update({f"transfer/{k}": v for k, v in self._transfer(images, targets, ctx.device).items()})
        return out

    def _transfer(self, images: torch.Tensor, targets: list[int | None], device: torch.device) -> dict[str, float]:
        assert self.eval_model is not None
        model = self.eval_model.to(device)
        if model.num_classes is not None and any(t is not None and t >= model.num_classes for t in targets):
            log.warning("eval model %s has %s classes; transfer/* left out for target %s", model.name, model.num_classes, targets)
            return {}
        with torch.no_grad():
            logits = model(resize_square(images, model.input_size), [LOGITS])[LOGITS]
        return class_scores(logits, targets)

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        result.final.update(self.compute(ctx, result))


