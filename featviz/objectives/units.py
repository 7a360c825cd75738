"""Objectives of one unit: a neuron, a channel, a whole layer (DeepDream), a class logit or probability."""

from __future__ import annotations

import torch

from featviz.errors import UnitOutOfRangeError
from featviz.models.feature_model import LOGITS
from featviz.objectives.base import Acts, LayerObjective, check_unit


class Neuron(LayerObjective):
    """``layer[x, y, unit]``: one spatial position of one channel (the centre by default)."""

    def __init__(self, layer: str, unit: int, x: int | None = None, y: int | None = None) -> None:
        super().__init__(layer)
        self.unit, self.x, self.y = int(unit), x, y
        self.name = f"neuron({layer}:{unit}" + ("" if x is None and y is None else f"@{x},{y}") + ")"

    def _validate_shape(self, shape: tuple[int, ...]) -> None:
        check_unit(self.layer, self.unit, shape)
        if len(shape) == 3:
            for v, extent, axis in ((self.x, shape[2], "x"), (self.y, shape[1], "y")):
                if v is not None and not 0 <= v < extent:
                    raise UnitOutOfRangeError(f"neuron {axis}={v} is outside layer {self.layer!r} ({extent} wide); use 0..{extent - 1}")

    def score(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layer]
        if a.dim() == 2:
            return a[:, self.unit]
        h, w = a.shape[-2:]
        x = w // 2 if self.x is None else self.x
        y = h // 2 if self.y is None else self.y
        return a[:, self.unit, y, x]


class Channel(LayerObjective):
    """``mean(layer[:, :, unit])``: a whole feature map, the article's workhorse."""

    def __init__(self, layer: str, unit: int) -> None:
        super().__init__(layer)
        self.unit = int(unit)
        self.name = f"channel({layer}:{unit})"

    def _validate_shape(self, shape: tuple[int, ...]) -> None:
        check_unit(self.layer, self.unit, shape)

    def score(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layer][:, self.unit]
        return a.reshape(a.shape[0], -1).mean(dim=1)


class DeepDream(LayerObjective):
    """``mean(layer**2)``: what the layer as a whole finds interesting."""

    def __init__(self, layer: str) -> None:
        super().__init__(layer)
        self.name = f"deepdream({layer})"

    def score(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layer]
        return (a**2).reshape(a.shape[0], -1).mean(dim=1)


class ClassLogit(LayerObjective):
    """Pre-softmax evidence for class ``unit``; the article finds it gives better images."""

    def __init__(self, unit: int) -> None:
        super().__init__(LOGITS)
        self.unit = int(unit)
        self.name = f"logit({unit})"

    def _validate_shape(self, shape: tuple[int, ...]) -> None:
        check_unit(LOGITS, self.unit, shape, what="class")

    def score(self, acts: Acts) -> torch.Tensor:
        return acts[LOGITS][:, self.unit]


class ClassProb(ClassLogit):
    """Softmax probability of class ``unit``; often rises by suppressing other classes."""

    def __init__(self, unit: int) -> None:
        super().__init__(unit)
        self.name = f"prob({unit})"

    def score(self, acts: Acts) -> torch.Tensor:
        return torch.softmax(acts[LOGITS], dim=1)[:, self.unit]


# Lower-case constructors, Lucid style.
neuron = Neuron


channel = Channel


deepdream = DeepDream


class_logit = ClassLogit


class_prob = ClassProb
