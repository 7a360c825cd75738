"""Image embeddings in a network's feature space, and the distances the scorecard takes in it.

Papers that score a visualization from outside the optimized network (MACO's plausibility
and FID, MIS's machine observer) compare images by a classifier's penultimate features:
the globally pooled map that its last linear layer reads. :func:`pooled_features` takes
exactly that input, with a hook, so it works for any network with a final ``nn.Linear``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from featviz.errors import ConfigError
from featviz.models import FeatureModel


def _last_linear(model: FeatureModel) -> nn.Linear:
    layers = [m for m in model.net.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ConfigError(f"model {model.name!r} has no final nn.Linear to take pooled features from; choose a classifier as metrics.eval_model")
    return layers[-1]


@torch.no_grad()
def pooled_features(model: FeatureModel, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """``[B, D]``: what ``model``'s last linear layer reads for each image in [0, 1].

    Images are resized to the model's input size first (a feature of a 64 px render and of
    a 224 px photo are then comparable); batches of ``batch_size`` bound the memory.
    """
    head = _last_linear(model)
    size = model.input_size
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].flatten(1).float()))
    device = next(model.parameters()).device
    try:
        for chunk in images.split(batch_size):
            x = chunk.to(device)
            if x.shape[-2:] != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
            model.net(model.normalize(x))
    finally:
        handle.remove()
    return torch.cat(captured).cpu()


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[len(a), len(b)]`` cosine similarities of the rows."""
    return F.normalize(a.double(), dim=1) @ F.normalize(b.double(), dim=1).T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))``, the FID formula (Heusel et
    al. 2017) on whatever features are given. With centred samples ``X`` (``S = X^T X / (n-1)``)
    the eigenvalues of ``S_a S_b`` are the squared singular values of ``X_b X_a^T / sqrt((n_a-1)(n_b-1))``,
    so the trace term is a sum of singular values of an ``n_b x n_a`` matrix: exact, and far
    cheaper than a ``D x D`` matrix square root when the sets are smaller than the feature
    dimension (a run's images against a folder of photos). A set of one image has zero
    covariance: the value is then its distance to the mean plus the reference's spread.
    """
    a, b = a.double(), b.double()
    mu = (a.mean(0) - b.mean(0)).pow(2).sum()
    xa, xb = a - a.mean(0), b - b.mean(0)
    na, nb = max(len(a) - 1, 1), max(len(b) - 1, 1)
    if len(a) * len(b) <= a.shape[1] ** 2:
        cross = torch.linalg.svdvals(xb @ xa.T).sum() / math.sqrt(na * nb)
    else:  # many samples: the D x D route
        cov_a, cov_b = xa.T @ xa / na, xb.T @ xb / nb
        vals, vecs = torch.linalg.eigh(cov_a)
        root_a = (vecs * vals.clamp_min(0).sqrt()) @ vecs.T
        cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float(mu + xa.pow(2).sum() / na + xb.pow(2).sum() / nb - 2 * cross)
