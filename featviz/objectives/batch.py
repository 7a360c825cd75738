"""Batch terms: objectives that compare the images of one batch (interpolation, alignment, diversity).

Each needs batch >= 2 and scores every batch element from the whole batch's activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from featviz.errors import ConfigError
from featviz.models.layout import grid_of
from featviz.objectives.base import Acts, LayerObjective, Objective, Shapes


class Interpolate(Objective):
    """Image ``i`` of a batch of ``B`` maximizes ``(1 - t) * a + t * b`` with ``t = i / (B - 1)``.

    The first image shows ``a`` alone, the last ``b`` alone, those between the blend; with a
    shared parameterization (:class:`featviz.params.SharedFFTImage`) and :class:`Alignment`
    the frames read as one picture morphing from A to B.
    """

    def __init__(self, a: Objective, b: Objective) -> None:
        self.a, self.b = a, b
        self.layers = a.layers | b.layers
        self.name = f"interpolate({a.name} -> {b.name})"

    def score(self, acts: Acts) -> torch.Tensor:
        sa, sb = self.a.score(acts), self.b.score(acts)
        t = torch.linspace(0.0, 1.0, sa.shape[0], device=sa.device, dtype=sa.dtype)
        return (1 - t) * sa + t * sb

    def validate(self, shapes: Shapes, batch: int) -> None:
        require_batch("objective=interpolate blends from the first image of the batch to the last", batch)
        self.a.validate(shapes, batch)
        self.b.validate(shapes, batch)


class Alignment(LayerObjective):
    """Minus the mean squared difference of ``layer`` between images up to ``reach`` apart.

    Image ``i`` scores ``-sum_d mean((act_i - act_{i+d})**2) / decay**d`` over
    ``d = 1..reach`` (``i + d`` inside the batch), so near neighbours are pulled together
    most. Added (times a weight) to an interpolation objective it keeps the frames aligned:
    an early layer makes them share layout and texture while the blend changes the content.
    """

    def __init__(self, layer: str, decay: float = 2.0, reach: int = 4) -> None:
        super().__init__(layer)
        if float(decay) <= 0:
            raise ConfigError(f"alignment decay={decay} must be > 0 (2 halves the pull per extra frame of distance)")
        if int(reach) < 1:
            raise ConfigError(f"alignment reach={reach} must be >= 1")
        self.decay, self.reach = float(decay), int(reach)
        self.name = f"alignment({layer})"

    def score(self, acts: Acts) -> torch.Tensor:
        act = acts[self.layer].flatten(1)
        b = act.shape[0]
        penalty = torch.zeros(b, device=act.device, dtype=act.dtype)
        for d in range(1, min(self.reach, b - 1) + 1):
            diff = ((act[:-d] - act[d:]) ** 2).mean(1) / self.decay**d
            penalty = penalty + torch.cat([diff, diff.new_zeros(d)])
        return -penalty

    def validate(self, shapes: Shapes, batch: int) -> None:
        require_batch("regularizer.alignment pulls neighbouring images of the batch together", batch)



def gram_matrices(act: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` (or ``[B, C]``) -> ``[B, C, C]``: channel products summed over positions."""
    f = act.flatten(2) if act.dim() > 2 else act[:, :, None]
    return f @ f.transpose(1, 2)


def pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` -> ``[B, B]`` cosine similarity of the flattened rows (0 for an all-zero row)."""
    unit = F.normalize(x.flatten(1), dim=1, eps=1e-10)
    return unit @ unit.T


def mean_over_others(pairwise: torch.Tensor) -> torch.Tensor:
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
        return mean_over_others(pairwise_cosine(gram_matrices(grid_of(acts, self.layer))))


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
        act = grid_of(acts, self.layer)
        positions = act[0, 0].numel()
        grams = gram_matrices(act)
        dist = style_distance(grams[:, None], grams[None, :], positions)
        return -mean_over_others(dist)


DIVERSITY_KINDS: dict[str, type[BatchTerm]] = {"gram": GramDiversity, "style": StyleDiversity}


def require_batch(what: str, batch: int) -> None:
    if batch < 2:
        raise ConfigError(f"{what}; set batch >= 2 (e.g. batch=6)")
