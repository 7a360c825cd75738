"""The scorecard: how good a visualization is, measured from outside the network it excites.

``robust/*`` asks the optimized network about unseen views of its own image; these ask what
papers since the article ask, against natural images (a reference folder,
:class:`~featviz.metrics.reference.ReferenceSet`) and an independent eval network:

* ``plausibility/knn_cos``: mean cosine similarity of the image's pooled eval features to its
  ``k`` nearest reference photos (of the target class when the folder has it); MACO (Fel et
  al. 2023) scores plausibility this way. ``plausibility/fd``: Fréchet distance of the
  feature distributions (the FID formula; meaningful only for large sets on both sides).
* For a unit: its natural exemplars (the reference photos it responds to most and least,
  :func:`exemplars`), ``exemplar_ratio`` (its response to the visualization over its mean
  response to the top exemplars), ``path/similarity_min`` and ``path/divergence_layer``
  (Geirhos et al. 2023: a visualization can drive the unit through another path than
  natural images; :func:`path_similarity` compares the layers on the way) and
  ``mis/accuracy`` (a machine 2-AFC after Borowski et al. 2021 / Zimmermann et al. 2024,
  :func:`mis_accuracy`).
* :func:`seed_stability` over the images of one config rendered with several seeds.

Every similarity of this module is a cosine of feature vectors; those that compare a
visualization with exemplars are taken after subtracting the reference set's mean, so they
measure what is *particular* to an image rather than what every photo shares (uncentred,
the all-positive pooled ReLU features of any two images are alike).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from featviz.metrics.features import cosine_matrix
from featviz.models import LOGITS, FeatureModel
from featviz.models.layout import grid_of, layout_of
from featviz.objectives.base import LayerObjective, Objective, Offset, OnBatch, Scaled, Sum
from featviz.objectives.batch import Alignment, BatchTerm

#: Activation modules, the natural stops along a path (a conv's output before its BN is not).
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Tanh, nn.Sigmoid)


def knn_cosine(vis: torch.Tensor, reference: torch.Tensor, k: int = 5) -> torch.Tensor:
    """``[B]``: each visualization's mean cosine similarity to its ``k`` nearest reference
    features (``plausibility/knn_cos``; 1.0 for a reference image itself with ``k=1``)."""
    k = max(1, min(int(k), len(reference)))
    return cosine_matrix(vis, reference).topk(k, dim=1).values.mean(1)


def exemplars(scores: torch.Tensor, quantile: float) -> tuple[list[int], list[int]]:
    """Indices of the top and bottom ``quantile`` of reference photos by a unit's ``scores``
    (at least one each; ties keep folder order), highest and lowest first."""
    k = max(1, round(quantile * scores.numel()))
    order = torch.argsort(scores, descending=True, stable=True)
    return order[:k].tolist(), torch.argsort(scores, stable=True)[:k].tolist()


def path_layers(model: FeatureModel, unit_layer: str, count: int) -> list[str]:
    """Up to ``count`` layers on the way to ``unit_layer``, evenly spaced, ending with it.

    The stops are the activation modules defined before the unit's layer (definition order,
    which is the call order of sequential networks such as EfficientNet, ResNet, VGG), or all
    leaf modules when the network has no activation modules.
    """
    names = [n for n in model.layer_names if n != LOGITS]
    if unit_layer not in names:
        return [unit_layer]
    before = names[: names.index(unit_layer)]
    modules = dict(model.net.named_modules())
    leaves = [n for n in before if not any(True for _ in modules[n].children())]
    stops = [n for n in leaves if isinstance(modules[n], ACTIVATIONS)] or leaves
    if count < 2 or not stops:
        return [unit_layer]
    picked = torch.linspace(0, len(stops) - 1, min(count - 1, len(stops))).round().long().tolist()
    return [*dict.fromkeys(stops[i] for i in picked), unit_layer]


def layer_vectors(acts: dict[str, torch.Tensor], layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{layer: [B, C]}``: each layer's activation averaged over its positions (any layout)."""
    out = {}
    for layer in layers:
        if layout_of(acts, layer).kind == "vector":
            out[layer] = acts[layer].flatten(1).double()
        else:
            out[layer] = grid_of(acts, layer).double().mean(dim=(2, 3))
    return out


def path_similarity(vis: dict[str, torch.Tensor], exemplar: dict[str, torch.Tensor], centre: dict[str, torch.Tensor]) -> list[float]:
    """Per layer: cosine of the visualization's vector ``[C]`` and its exemplars' mean vector,
    both minus the reference set's mean ``centre`` (1.0 when the visualization is its only
    exemplar; around 0 when it shares nothing particular with them)."""
    sims = []
    for layer, v in vis.items():
        a, b = v - centre[layer], exemplar[layer].mean(0) - centre[layer]
        sims.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
    return sims


def divergence_layer(similarities: Sequence[float], threshold: float) -> float:
    """Index (on the path) of the first layer whose similarity falls below ``threshold``; NaN if none."""
    return next((float(i) for i, s in enumerate(similarities) if s < threshold), math.nan)


def mis_accuracy(vis: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor, centre: torch.Tensor) -> float:
    """A machine observer's 2-AFC accuracy, over every (top, bottom) exemplar pair.

    Shown the visualization (features ``[D]``) and two natural images, one that excites the
    unit most and one that excites it least (``[T, D]``, ``[U, D]``), the observer picks the one
    closer to the visualization (centred cosine in the eval network's features). A pick of
    the top exemplar counts 1, a tie 1/2: 1.0 for a visualization that is the top exemplar,
    about 0.5 for one that tells nothing about the unit.
    """
    sim_top = cosine_matrix((vis - centre)[None], top - centre)[0]
    sim_bottom = cosine_matrix((vis - centre)[None], bottom - centre)[0]
    diff = sim_top[:, None] - sim_bottom[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def seed_stability(features: torch.Tensor) -> float:
    """Mean pairwise cosine similarity of one config's images over seeds (rows ``[S, D]``); NaN below two."""
    if len(features) < 2:
        return math.nan
    sims = cosine_matrix(features, features)
    n = len(features)
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def image_objective(objective: Objective, index: int) -> Objective | None:
    """The unit terms of ``objective`` that act on batch image ``index``, or None if none do.

    A unit term is a layer objective on a hidden layer (channel, neuron, direction, layer,
    token); class terms, batch terms (diversity, alignment) and interpolations are left out:
    they have no natural exemplars of their own.
    """

    def walk(obj: Objective) -> Objective | None:
        if isinstance(obj, Sum):
            kept = [t for t in (walk(t) for t in obj.terms) if t is not None]
            return None if not kept else kept[0] if len(kept) == 1 else Sum(kept)
        if isinstance(obj, Scaled):
            inner = walk(obj.inner)
            return None if inner is None else Scaled(inner, obj.factor)
        if isinstance(obj, Offset):
            return walk(obj.inner)
        if isinstance(obj, OnBatch):
            return walk(obj.inner) if obj.index == index else None
        if isinstance(obj, LayerObjective) and not isinstance(obj, (Alignment, BatchTerm)) and obj.layer != LOGITS:
            return obj
        return None

    return walk(objective)
