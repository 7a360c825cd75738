"""Diversity: optimize a batch together and push its images apart.

One optimized image shows one facet of a feature (article, "Diversity"); a batch optimized
with a "diversity term" shows several. The terms read activations, so they are
:class:`~featviz.objectives.Objective` subclasses that compose with the rest. Their score is
how *alike* an image is to the other images of its batch, so they are subtracted::

    channel("blocks.10", 3) - 100 * GramDiversity("blocks.10")

* :class:`GramDiversity`: the article's term, the cosine similarity of the images' Gram
  matrices (channel co-activations summed over positions, so *where* a pattern appears does
  not matter, only which channels fire together);
* :class:`StyleDiversity`: the style-transfer alternative the article names, Gatys et
  al.'s style loss between batch members, maximized;
* :func:`feature_cossim` and :class:`DiversityMetric`: how alike a batch's final images
  are, measured on spatially pooled features, so that any batch run can report it.

:func:`with_batch_terms` is the one place config values become these terms (and the
neighbour :class:`~featviz.directions.Alignment` of interpolation, which compares batch
members too), so the Hydra builder stays a single call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from featviz.directions import Alignment
from featviz.errors import ConfigError
from featviz.models.feature_model import FeatureModel
from featviz.objectives import Acts, LayerObjective, Objective, Shapes
from featviz.render import Callback, RenderContext, RenderResult


def gram_matrices(act: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` (or ``[B, C]``) -> ``[B, C, C]``: channel products summed over positions."""
    f = act.flatten(2) if act.dim() > 2 else act[:, :, None]
    return f @ f.transpose(1, 2)


def pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` -> ``[B, B]`` cosine similarity of the flattened rows (0 for an all-zero row)."""
    unit = F.normalize(x.flatten(1), dim=1, eps=1e-10)
    return unit @ unit.T


def _mean_over_others(pairwise: torch.Tensor) -> torch.Tensor:
    """Row means of a ``[B, B]`` matrix without its diagonal."""
    b = pairwise.shape[0]
    off = pairwise.masked_fill(torch.eye(b, dtype=torch.bool, device=pairwise.device), 0.0)
    return off.sum(1) / (b - 1)


class BatchTerm(LayerObjective):
    """A term that compares each image of the batch with the others; needs ``batch >= 2``."""

    def validate(self, shapes: Shapes, batch: int) -> None:
        if batch < 2:
            raise ConfigError(f"{self.name} pushes the images of a batch apart; set batch >= 2 (4 shows four facets)")
        super().validate(shapes, batch)


class GramDiversity(BatchTerm):
    """Mean cosine similarity of an image's Gram matrix to those of the other images.

    The article sums the pairwise similarities; this takes the mean over the other images
    instead, so a weight means the same for every batch size and the score lies in [-1, 1]
    (in [0, 1] for non-negative activations). A Lucid weight ``w`` for a batch of ``B`` is
    ``w * (B - 1)`` here.
    """

    def __init__(self, layer: str) -> None:
        super().__init__(layer)
        self.name = f"gram_diversity({layer})"

    def score(self, acts: Acts) -> torch.Tensor:
        return _mean_over_others(pairwise_cosine(gram_matrices(acts[self.layer])))


def style_distance(gram_a: torch.Tensor, gram_b: torch.Tensor, positions: int) -> torch.Tensor:
    """Gatys et al.'s style loss between Gram matrices ``[..., C, C]`` of ``positions`` positions.

    ``sum((Ga - Gb)**2) / (4 C**2 positions**2)``: the mean squared difference of the
    position-normalized Gram matrices, over four.
    """
    return 0.25 * (((gram_a - gram_b) / positions) ** 2).flatten(-2).mean(-1)


class StyleDiversity(BatchTerm):
    """Minus the mean style loss between an image and the other images (higher = more alike).

    Subtracting it maximizes the style distance, so the batch shows the feature "in
    different styles". Unlike :class:`GramDiversity` the distance grows with activation
    magnitude, so its weight is smaller and depends on the layer (see the docs' table).
    """

    def __init__(self, layer: str) -> None:
        super().__init__(layer)
        self.name = f"style_diversity({layer})"

    def score(self, acts: Acts) -> torch.Tensor:
        act = acts[self.layer]
        positions = act[0, 0].numel() if act.dim() > 2 else 1
        grams = gram_matrices(act)
        dist = style_distance(grams[:, None], grams[None, :], positions)
        return -_mean_over_others(dist)


DIVERSITY_KINDS: dict[str, type[BatchTerm]] = {"gram": GramDiversity, "style": StyleDiversity}
# The `regularizer` config keys that :func:`with_batch_terms` takes.
BATCH_TERM_KEYS = ("diversity", "diversity_layer", "diversity_kind", "alignment", "alignment_layer")


def feature_cossim(act: torch.Tensor) -> float:
    """Mean pairwise cosine similarity of spatially averaged features ``[B, C, ...]``.

    Pooling over positions compares *what* each image shows, not where; 1 means the images
    are indistinguishable to the layer.
    """
    pooled = act.flatten(2).mean(2) if act.dim() > 2 else act
    return float(_mean_over_others(pairwise_cosine(pooled)).mean())


class DiversityMetric(Callback):
    """Adds ``diversity`` (1 - :func:`feature_cossim`) and ``feature_cossim`` to ``result.final``.

    Measured on the final, untransformed images resized to the model's input. With
    ``main``, the objective *without* the batch terms, it also adds ``objective_main`` (its
    batch mean on those images): the logged ``objective`` includes the diversity and
    alignment terms, so this is the number that says what a diversity weight costs the unit.
    Place it before the :class:`~featviz.outputs.RunWriter` so the writer and loggers record
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
        size = ctx.model.input_size
        images = images.to(ctx.device)
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        layers = {self.layer} | (self.main.layers if self.main is not None else set())
        with torch.no_grad():
            acts = ctx.model(images, layers)
        cossim = feature_cossim(acts[self.layer])
        result.final["feature_cossim"] = cossim
        result.final["diversity"] = 1.0 - cossim
        if self.main is not None:
            result.final["objective_main"] = float(self.main(acts).mean())


def deepest_layer(objective: Objective, model: FeatureModel) -> str:
    """The objective's layer that comes last in the network (the default for batch terms)."""
    model.check_layers(objective.layers)
    order = {name: i for i, name in enumerate(model.layer_names)}
    return max(objective.layers, key=order.__getitem__)


def with_batch_terms(
    objective: Objective,
    model: FeatureModel,
    batch: int,
    diversity: float = 0.0,
    diversity_layer: str | None = None,
    diversity_kind: str = "gram",
    alignment: float = 0.0,
    alignment_layer: str | None = None,
) -> tuple[Objective, list[Callback]]:
    """Add the configured batch terms to ``objective``; return it and the metric callbacks.

    ``objective - diversity * DIVERSITY_KINDS[diversity_kind](diversity_layer)
    + alignment * Alignment(alignment_layer)``, each left out at weight 0. Layers default to
    the objective's deepest layer. Every run with ``batch >= 2`` gets a
    :class:`DiversityMetric` at ``diversity_layer`` (or that default), which also scores the
    objective without the terms when any is on.
    """
    weights = {"diversity": diversity, "alignment": alignment}
    for key, weight in weights.items():
        try:
            weights[key] = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"regularizer.{key}={weight!r} must be a number (0 turns it off)") from None
        if not (math.isfinite(weights[key]) and weights[key] >= 0):
            raise ConfigError(f"regularizer.{key}={weight} must be a finite weight >= 0 (0 turns it off)")
    if diversity_kind not in DIVERSITY_KINDS:
        raise ConfigError(f"regularizer.diversity_kind={diversity_kind!r}; use one of {sorted(DIVERSITY_KINDS)}")
    default = deepest_layer(objective, model)
    metric_layer = diversity_layer or default
    main = objective if weights["diversity"] > 0 or weights["alignment"] > 0 else None
    if weights["diversity"] > 0:
        objective = objective - weights["diversity"] * DIVERSITY_KINDS[diversity_kind](metric_layer)
    if weights["alignment"] > 0:
        objective = objective + weights["alignment"] * Alignment(alignment_layer or default)
    callbacks: list[Callback] = [DiversityMetric(metric_layer, main)] if batch >= 2 else []
    return objective, callbacks
