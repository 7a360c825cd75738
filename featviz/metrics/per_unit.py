"""Metrics of each image of a batch on its own, for batches that render one unit per image.

The run metrics (:mod:`featviz.metrics.callback`) average over the batch: right for seeds of
one objective, wrong for a microscope batch, where image ``i`` shows unit ``i`` and each unit
needs its own numbers. These return one value per image, from the same measures: the image
metrics of :mod:`featviz.metrics.image`, the objective on unseen views
(:class:`~featviz.metrics.views.UnseenViews`), and, against a folder of photos, the unit's
exemplars and ``exemplar_ratio`` (as in :mod:`featviz.metrics.scorecard`).
"""

from __future__ import annotations

import math

import torch

from featviz.metrics.image import high_frequency_share, spectral_slope
from featviz.metrics.scorecard import exemplars
from featviz.metrics.views import UnseenViews
from featviz.models import FeatureModel
from featviz.models.layout import grid_of
from featviz.objectives.base import Objective
from featviz.ops import total_variation


def image_metrics_each(images: torch.Tensor, hf_cutoff: float = 0.25) -> list[dict[str, float]]:
    """``hf_share``, ``spectral_slope`` and ``tv`` of each image ``[B, 3, H, W]``."""
    x = images.detach().float()
    columns = {"hf_share": high_frequency_share(x, hf_cutoff), "spectral_slope": spectral_slope(x), "tv": total_variation(x)}
    return [{k: float(v[i]) for k, v in columns.items()} for i in range(x.shape[0])]


@torch.no_grad()
def robust_each(model: FeatureModel, objective: Objective, images: torch.Tensor, views: UnseenViews, n_views: int, generator: torch.Generator) -> list[float]:
    """Each image's objective score averaged over ``n_views`` unseen views (``objective`` scores per image)."""
    total = torch.zeros(images.shape[0], dtype=torch.float64)
    for _ in range(n_views):
        total += objective(model(views(images, generator, model.input_size), objective.layers)).double().cpu()
    return (total / max(1, n_views)).tolist()


@torch.no_grad()
def layer_scores(model: FeatureModel, layer: str, photos: torch.Tensor, kind: str = "channel", batch_size: int = 16) -> torch.Tensor:
    """``[N, C]``: every channel's response to each photo, in one pass for the whole layer.

    ``channel`` is the mean over positions (what the channel objective maximizes), ``neuron``
    the centre position. Scoring the folder once per layer, not once per unit, is what makes
    dataset examples affordable for every unit of a model.
    """
    device = model.mean.device
    out = []
    for i in range(0, len(photos), batch_size):
        a = grid_of(model(photos[i : i + batch_size].to(device), [layer]), layer).float()  # [b, C, H, W]
        out.append((a[:, :, a.shape[2] // 2, a.shape[3] // 2] if kind == "neuron" else a.mean(dim=(2, 3))).cpu())
    return torch.cat(out)


def exemplar_ratio(activation: float, scores: torch.Tensor, quantile: float = 0.2) -> float:
    """The visualization's activation over the mean of its top ``quantile`` exemplars' (NaN if that is 0)."""
    top, _ = exemplars(scores, quantile)
    top_mean = float(scores[top].mean())
    return activation / top_mean if top_mean != 0 else math.nan
