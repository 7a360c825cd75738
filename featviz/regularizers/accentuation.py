"""Keeping a render close to the photo it started from (feature accentuation, Hamblin et al. 2024).

Why: started from a photo (``param.init_image``), the optimizer would otherwise walk away
from it to whatever the unit likes best, and the render would stop saying anything about
the photo. The penalty is the squared distance to the photo relative to the photo's own
size, in pixels or, with ``layer``, in that (early) layer of the network, where a change
the network does not see costs nothing: colours and textures may move, the content may not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from featviz.models.feature_model import FeatureModel
from featviz.regularizers.base import Regularizer


class PhotoDistance(Regularizer):
    """``weight * ||f(x) - f(photo)||^2 / ||f(photo)||^2`` per image, ``f`` the pixels or ``model``'s ``layer``."""

    name = "accentuation"

    def __init__(self, weight: float, photo: torch.Tensor, model: FeatureModel | None = None, layer: str | None = None) -> None:
        super().__init__(weight)
        self.photo = photo
        self.model, self.layer = (model, layer) if layer else (None, None)
        self._target: torch.Tensor | None = None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What is compared: the pixels, or the layer's activations at the model's input size."""
        if self.model is None or self.layer is None:
            return images
        size = self.model.input_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return self.model(images, [self.layer])[self.layer]

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        if self._target is None or self._target.device != images.device:
            with torch.no_grad():
                self._target = self.features(self.photo.to(images))
        diff = (self.features(images) - self._target).flatten(1).pow(2).sum(1)
        return diff / self._target.flatten(1).pow(2).sum(1).clamp_min(1e-12)
