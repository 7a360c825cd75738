"""The end-of-run metrics callback: image metrics, unseen views and transfer added to result.final."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
    ModerateViews,
    UnseenViews,
    class_scores,
    class_targets,
    resize_square,
    view_metrics,
)
from featviz.metrics.scorer import ReferenceScorer
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
        moderate_views: how a moderate view is made (``transfer/moderate_*``, the same number
            of views and seed as ``robust/*``); the documented recipe by default.
        eval_model: the independent network for ``transfer/*`` (class objectives) and for
            the reference scores, or a function that builds it (called once, on first use:
            a unit run without a reference never loads it).
        reference: scores against a reference folder (``plausibility/*``, ``path/*``,
            ``mis/accuracy``, ``exemplar_ratio``; they need the eval model) and the folder's
            own image statistics (``reference/*``, the median photo: "photos: x" beside the run's).
        hf_cutoff: cut-off of ``hf_share`` in cycles per pixel.
        progress_fraction: the fraction of ``steps_to_<percent>``.
    """

    def __init__(
        self,
        views: int = 16,
        view_seed: int = 0,
        view_transform: UnseenViews | None = None,
        eval_model: FeatureModel | Callable[[], FeatureModel | None] | None = None,
        hf_cutoff: float = 0.25,
        progress_fraction: float = 0.9,
        reference: ReferenceScorer | None = None,
        moderate_views: ModerateViews | None = None,
    ) -> None:
        if int(views) < 0:
            raise ConfigError(f"metrics.views={views} must be >= 0 (0 leaves out robust/*)")
        check_cutoff(hf_cutoff)  # now, not after the run
        check_fraction(progress_fraction)
        self.views = int(views)
        self.view_seed = int(view_seed)
        self.view_transform = view_transform or UnseenViews()
        self.moderate_views = moderate_views or ModerateViews()
        self._reference_stats: dict[int, dict[str, float]] = {}
        self._eval_model = eval_model
        self.reference = reference
        self.hf_cutoff = float(hf_cutoff)
        self.progress_fraction = float(progress_fraction)

    def compute(self, ctx: RenderContext, result: RenderResult) -> dict[str, float]:
        images = result.images.to(ctx.device)
        out = {"objective_clean": float(ctx.evaluate(images).mean())}
        out.update(image_metrics(result.images, self.hf_cutoff))
        out[f"steps_to_{round(self.progress_fraction * 100)}"] = steps_to_fraction(result.history, self.progress_fraction)
        if self.views:
            gen = torch.Generator().manual_seed(self.view_seed)
            scores = view_metrics(ctx.model, ctx.objective, images, self.view_transform, self.views, gen)
            out.update({f"robust/{k}": v for k, v in scores.items()})
        targets = class_targets(ctx.objective, images.shape[0])
        has_class = any(t is not None for t in targets)
        if has_class:
            with torch.no_grad():
                clean = ctx.model(resize_square(images, ctx.model.input_size), [LOGITS])[LOGITS]
            out.update({f"clean/{k}": v for k, v in class_scores(clean, targets).items()})
        if self.reference is not None:
            out.update(self.reference_statistics(images.shape[-1]))
        if has_class or self.reference is not None:
            eval_model = self.eval_model
            if eval_model is not None:
                eval_model = eval_model.to(ctx.device)
                if has_class:
                    out.update(self.transfer(eval_model, images, targets))
                if self.reference is not None:
                    out.update(self.reference.score(ctx.model, ctx.objective, images, targets, eval_model))
        return out

    def reference_statistics(self, size: int) -> dict[str, float]:
        """``reference/<stat>``: the median over the reference photos (centre crops at ``size``) of each image metric."""
        if size not in self._reference_stats:
            photos = self.reference.reference.images(size)
            each = [image_metrics(photos[i : i + 1], self.hf_cutoff) for i in range(len(photos))]
            self._reference_stats[size] = {f"reference/{k}": float(torch.tensor([e[k] for e in each]).median()) for k in each[0] if k != "tv"}
        return self._reference_stats[size]

    @property
    def eval_model(self) -> FeatureModel | None:
        """The eval network, built on first use when a builder was given."""
        if callable(self._eval_model) and not isinstance(self._eval_model, FeatureModel):
            self._eval_model = self._eval_model()
        return self._eval_model

    @eval_model.setter
    def eval_model(self, model: FeatureModel | Callable[[], FeatureModel | None] | None) -> None:
        self._eval_model = model

    def transfer(self, model: FeatureModel, images: torch.Tensor, targets: list[int | None]) -> dict[str, float]:
        """``transfer/top1|top5|prob`` on the final image, ``transfer/view_*`` on the unseen views and
        ``transfer/moderate_*`` on the moderate ones."""
        if model.num_classes is not None and any(t is not None and t >= model.num_classes for t in targets):
            log.warning("eval model %s has %s classes; transfer/* left out for target %s", model.name, model.num_classes, targets)
            return {}
        with torch.no_grad():
            logits = model(resize_square(images, model.input_size), [LOGITS])[LOGITS]
        out = {f"transfer/{k}": v for k, v in class_scores(logits, targets).items()}
        if self.views:
            gen = torch.Generator().manual_seed(self.view_seed)
            scores = view_metrics(model, None, images, self.view_transform, self.views, gen, targets)
            out.update({f"transfer/view_{k}": v for k, v in scores.items()})
            gen = torch.Generator().manual_seed(self.view_seed)
            scores = view_metrics(model, None, images, self.moderate_views, self.views, gen, targets)
            out.update({f"transfer/moderate_{k}": v for k, v in scores.items()})
        return out

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        result.final.update(self.compute(ctx, result))


