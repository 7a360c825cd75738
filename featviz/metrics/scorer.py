"""ReferenceScorer: a run's final images against a reference folder (the scorecard's reference half).

One pass over the folder with the optimized network gives every batch image's unit scores
(hence its exemplars) and the layer vectors along each unit's path; the eval network's
pooled features of the folder come from the feature cache. The measures themselves are in
:mod:`featviz.metrics.scorecard`; this class only gathers their inputs and averages them over
the batch images they apply to.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from featviz.errors import ConfigError
from featviz.metrics.features import frechet_distance, pooled_features
from featviz.metrics.reference import ReferenceSet, index_chunks
from featviz.metrics.scorecard import (
    divergence_layer,
    exemplars,
    image_objective,
    knn_cosine,
    layer_vectors,
    mis_accuracy,
    path_layers,
    path_similarity,
)
from featviz.metrics.views import resize_square
from featviz.models import FeatureModel
from featviz.objectives.base import Objective

log = logging.getLogger("featviz")


@dataclass
class UnitInputs:
    """What one batch image's unit needs: its objective, its path and its exemplars' indices."""

    index: int
    objective: Objective
    path: list[str]
    top: list[int] | None = None
    bottom: list[int] | None = None


@dataclass
class ReferenceScorer:
    """Scores final images against ``reference`` (see :mod:`featviz.metrics.scorecard`).

    Args:
        knn: neighbours averaged by ``plausibility/knn_cos``.
        quantile: share of the folder taken as top (and as bottom) exemplars of a unit.
        path_layers: layers compared along a unit's path, the unit's own included.
        path_threshold: ``path/divergence_layer`` is the first layer whose centred similarity
            to the exemplars falls below this.
        batch_size: reference images per forward pass.
    """

    reference: ReferenceSet
    knn: int = 5
    quantile: float = 0.2
    path_layers: int = 8
    path_threshold: float = 0.5
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0 < self.quantile <= 0.5:
            raise ConfigError(f"metrics.exemplar_quantile={self.quantile} must be in (0, 0.5] (top and bottom must not overlap)")
        if self.knn < 1 or self.path_layers < 1:
            raise ConfigError(f"metrics.knn={self.knn} and metrics.path_layers={self.path_layers} must be >= 1")

    def score(self, model: FeatureModel, objective: Objective, images: torch.Tensor, targets: Sequence[int | None], eval_model: FeatureModel) -> dict[str, float]:
        """The reference metrics of ``images`` ``[B, 3, H, W]`` (averaged over the batch)."""
        ref_feats = self.reference.features(eval_model)
        vis_feats = pooled_features(eval_model, images)
        out = self._plausibility(vis_feats, ref_feats, targets)
        units = [UnitInputs(i, obj, []) for i in range(len(images)) if (obj := image_objective(objective, i)) is not None]
        if units:
            out.update(self._units(model, images, units, vis_feats, ref_feats))
        return out

    def _plausibility(self, vis: torch.Tensor, refs: torch.Tensor, targets: Sequence[int | None]) -> dict[str, float]:
        """k-NN cosine to the target class's photos where the folder has them (else to all), FD to all."""
        per_image = []
        for i, target in enumerate(targets):
            same = self.reference.of_class(target) if target is not None else []
            per_image.append(float(knn_cosine(vis[i : i + 1], refs[same] if same else refs, self.knn)[0]))
        return {"plausibility/knn_cos": sum(per_image) / len(per_image), "plausibility/fd": frechet_distance(vis, refs)}

    def _units(self, model: FeatureModel, images: torch.Tensor, units: list[UnitInputs], vis_feats: torch.Tensor, ref_feats: torch.Tensor) -> dict[str, float]:
        for u in units:
            layers = sorted(u.objective.layers)
            u.path = path_layers(model, layers[0], self.path_layers) if len(layers) == 1 else []
        wanted = sorted({layer for u in units for layer in (*u.path, *u.objective.layers)})
        device = next(model.parameters()).device
        # One pass over the folder: each unit's score of every photo, each path layer's vectors.
        scores: list[list[torch.Tensor]] = [[] for _ in units]
        vectors: dict[str, list[torch.Tensor]] = {layer: [] for u in units for layer in u.path}
        chunks = index_chunks(len(self.reference), self.batch_size)
        with torch.no_grad():
            for chunk in chunks:
                acts = model(self.reference.images(model.input_size, chunk).to(device), wanted)
                for k, u in enumerate(units):
                    scores[k].append(u.objective(acts).double().cpu())
                for layer, vecs in layer_vectors(acts, list(vectors)).items():
                    vectors[layer].append(vecs.cpu())
            vis_acts = model(resize_square(images.to(device), model.input_size), wanted)
        ref_vectors = {layer: torch.cat(v) for layer, v in vectors.items()}
        vis_vectors = layer_vectors(vis_acts, list(vectors))
        centre_feats = ref_feats.double().mean(0)
        totals: dict[str, list[float]] = {}
        for k, u in enumerate(units):
            unit_scores = torch.cat(scores[k])
            u.top, u.bottom = exemplars(unit_scores, self.quantile)
            vis_score = float(u.objective(vis_acts)[u.index])
            top_mean = float(unit_scores[u.top].mean())
            found = {
                "exemplar_ratio": vis_score / top_mean if top_mean != 0 else math.nan,
                "mis/accuracy": mis_accuracy(vis_feats[u.index].double(), ref_feats[u.top].double(), ref_feats[u.bottom].double(), centre_feats),
            }
            if u.path:
                sims = path_similarity(
                    {layer: vis_vectors[layer][u.index] for layer in u.path},
                    {layer: ref_vectors[layer][u.top] for layer in u.path},
                    {layer: ref_vectors[layer].mean(0) for layer in u.path},
                )
                found["path/similarity_min"] = min(sims)
                found["path/divergence_layer"] = divergence_layer(sims, self.path_threshold)
                log.info("path similarity of image %d along %s: %s", u.index, u.path, ", ".join(f"{s:.2f}" for s in sims))
            for key, value in found.items():
                totals.setdefault(key, []).append(value)
        return {key: _mean(values) for key, values in totals.items()}


def _mean(values: list[float]) -> float:
    """Mean of the defined values (a NaN divergence layer means "never diverged"), NaN if none."""
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan
