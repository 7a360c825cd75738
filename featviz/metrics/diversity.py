"""The diversity metric of batch runs: how alike a batch's images are at a layer."""

from __future__ import annotations

import torch

from featviz.callbacks import Callback, RenderContext, RenderResult
from featviz.models.feature_model import FeatureModel
from featviz.models.layout import grid_of
from featviz.objectives.base import Objective
from featviz.objectives.batch import mean_over_others, pairwise_cosine


def feature_cossim(act: torch.Tensor) -> float:
    """Mean pairwise cosine similarity of spatially averaged features ``[B, C, ...]``.

    Pooling over positions compares *what* each image shows, not where; 1 means the images
    are indistinguishable to the layer.
    """
    pooled = act.flatten(2).mean(2) if act.dim() > 2 else act
    return float(mean_over_others(pairwise_cosine(pooled)).mean())


class DiversityMetric(Callback):
    """Adds ``diversity`` (1 - :func:`feature_cossim`) and ``feature_cossim`` to ``result.final``.

    Measured on the final, untransformed images in the run's own setting (resized to the
    model's input only when the run resizes: :meth:`RenderContext.clean_input`). With
    ``main``, the objective *without* the batch terms, it also adds ``objective_main`` (its
    batch mean on those images): the logged ``objective`` includes the diversity and
    alignment terms, so this is the number that says what a diversity weight costs the unit.
    Place it before the :class:`~featviz.writer.RunWriter` so the writer and loggers record
    it. Batches of one have no pairs and are left alone.
    """

    def __init__(self, layer: str, main: Objective | None = None) -> None:
        self.layer = layer
        self.main = main

    def on_start(self, ctx: RenderContext) -> None:
        # Fail before the optimization, not after it, when the layer does not exist.
        ctx.model.check_layers([self.layer])

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        images = result.images
        if images.shape[0] < 2:
            return
        images = ctx.clean_input(images.to(ctx.device))
        layers = {self.layer} | (self.main.layers if self.main is not None else set())
        with torch.no_grad():
            acts = ctx.model(images, layers)
        cossim = feature_cossim(grid_of(acts, self.layer))  # channels first whatever the layout
        result.final["feature_cossim"] = cossim
        result.final["diversity"] = 1.0 - cossim
        if self.main is not None:
            result.final["objective_main"] = float(self.main(acts).mean())


def deepest_layer(objective: Objective, model: FeatureModel) -> str:
    """The objective's layer that comes last in the network (the default for batch terms)."""
    model.check_layers(objective.layers)
    order = {name: i for i, name in enumerate(model.layer_names)}
    return max(objective.layers, key=order.__getitem__)


