"""Objectives of one unit: a neuron, a channel, a whole layer (DeepDream), a token, a class logit or probability.

Each reads its layer through the layer's :class:`~featviz.models.layout.Layout`, as the
``[B, C, H, W]`` grid: a Swin stage's channels are its last axis and a ViT layer's
positions are its patch tokens, yet ``unit``, ``x`` and ``y`` mean the same everywhere.
"""

from __future__ import annotations

import torch

from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.models.feature_model import LOGITS
from featviz.models.layout import grid_of, layout_of
from featviz.objectives.base import Acts, LayerObjective, Shapes, check_unit


class Neuron(LayerObjective):
    """``layer[x, y, unit]``: one spatial position of one channel (the centre by default).

    On a ViT layer ``(x, y)`` is a patch of the grid (the class token is
    :class:`Token`'s); on a vector layer (``[B, C]``) there is no position and x, y are unused.
    """

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
        if layout_of(acts, self.layer).kind == "vector":
            return acts[self.layer][:, self.unit]
        a = grid_of(acts, self.layer)
        h, w = a.shape[-2:]
        x = w // 2 if self.x is None else self.x
        y = h // 2 if self.y is None else self.y
        return a[:, self.unit, y, x]


class Channel(LayerObjective):
    """``mean(layer[:, :, unit])``: a whole feature map, the article's workhorse (a ViT's: over its patch tokens)."""

    def __init__(self, layer: str, unit: int) -> None:
        super().__init__(layer)
        self.unit = int(unit)
        self.name = f"channel({layer}:{unit})"

    def _validate_shape(self, shape: tuple[int, ...]) -> None:
        check_unit(self.layer, self.unit, shape)

    def score(self, acts: Acts) -> torch.Tensor:
        a = grid_of(acts, self.layer)[:, self.unit]
        return a.reshape(a.shape[0], -1).mean(dim=1)


class DeepDream(LayerObjective):
    """``mean(layer**2)`` over the layer's grid: what the layer as a whole finds interesting."""

    def __init__(self, layer: str) -> None:
        super().__init__(layer)
        self.name = f"deepdream({layer})"

    def score(self, acts: Acts) -> torch.Tensor:
        a = grid_of(acts, self.layer)
        return (a**2).reshape(a.shape[0], -1).mean(dim=1)


class Token(LayerObjective):
    """One token of a token layer ``[B, N, D]``: its channel ``unit``, or without one its mean square.

    ``token`` 0 is a ViT's class token (what the classifier reads); the patch at ``(x, y)``
    is ``prefix + y * W + x`` (:class:`Neuron` addresses patches by x and y directly).
    """

    def __init__(self, layer: str, token: int = 0, unit: int | None = None) -> None:
        super().__init__(layer)
        self.token = int(token)
        self.unit = None if unit is None else int(unit)
        self.name = f"token({layer}:{self.token}" + ("" if self.unit is None else f":{self.unit}") + ")"

    def _not_tokens(self, kind: str) -> ConfigError:
        return ConfigError(
            f"objective=token needs a token layer [B, N, D] (a ViT encoder layer); objective.layer={self.layer!r} is {kind}: "
            f"use objective=neuron with objective.x and objective.y"
        )

    def validate(self, shapes: Shapes, batch: int) -> None:
        if self.layer not in shapes:
            return
        layout = getattr(shapes, "layouts", {}).get(self.layer)
        if layout is None or layout.kind != "tokens":
            raise self._not_tokens(layout.kind if layout else "of unknown layout")
        channels, h, w = shapes[self.layer]
        count = layout.prefix + h * w
        if not 0 <= self.token < count:
            raise UnitOutOfRangeError(f"token {self.token} is out of range for layer {self.layer!r} with {count} tokens; use 0..{count - 1}")
        if self.unit is not None:
            check_unit(self.layer, self.unit, (channels,))

    def score(self, acts: Acts) -> torch.Tensor:
        kind = layout_of(acts, self.layer).kind
        if kind != "tokens":
            raise self._not_tokens(kind)
        t = acts[self.layer][:, self.token]
        return t[:, self.unit] if self.unit is not None else (t**2).mean(dim=1)


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


token = Token


class_logit = ClassLogit


class_prob = ClassProb
