"""A reference folder's photos and every channel's score of each: a shard's dataset examples.

Scored once per layer (one forward pass per photo for all the layer's channels), not once per
unit, so dataset examples stay cheap next to the render even for layers of a thousand units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from featviz.images import grid
from featviz.metrics.per_unit import layer_scores
from featviz.metrics.reference import ReferenceSet
from featviz.models.feature_model import FeatureModel

EXAMPLE_PX = 96  # side of a dataset example in a unit's strip


class Exemplars:
    """A reference folder's photos and, per layer, every channel's score of each (one pass per layer)."""

    def __init__(self, folder: str, model: FeatureModel, kind: str) -> None:
        self.reference = ReferenceSet.from_folder(folder, "microscope.reference")
        self.photos = self.reference.images(model.input_size)
        self.model, self.kind = model, kind
        self._scores: dict[str, torch.Tensor] = {}

    def scores(self, layer: str) -> torch.Tensor:
        if layer not in self._scores:
            self._scores[layer] = layer_scores(self.model, layer, self.photos, self.kind)
        return self._scores[layer]

    def strip(self, indices: list[int]) -> torch.Tensor:
        """The photos ``indices`` side by side, each ``EXAMPLE_PX`` a side."""
        small = F.interpolate(self.photos[indices], size=(EXAMPLE_PX, EXAMPLE_PX), mode="bilinear", align_corners=False, antialias=True)
        return grid(small, nrow=len(indices))
