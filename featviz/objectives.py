"""Objectives: what to make the network do, as a small algebra.

An :class:`Objective` maps ``{layer: activation}`` to a score per batch element (shape
``[B]``) that the render loop *maximizes*. Objectives compose like Lucid's::

    channel("blocks.8", 3) + 0.5 * neuron("blocks.10", 7) - channel("blocks.8", 9)
    channel("blocks.8", 3, batch=0) + channel("blocks.8", 4, batch=1)

Each objective declares the layers it reads (``.layers``), which is how the model knows
where it may stop its forward pass, and checks its indices against the layer shapes
(``.validate``) before any optimization starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.models.feature_model import LOGITS

Acts = Mapping[str, torch.Tensor]
Shapes = Mapping[str, tuple[int, ...]]


class Objective:
    """Base class: a function of the activations that returns one score per image."""

    layers: frozenset[str] = frozenset()
    name: str = "objective"

    def score(self, acts: Acts) -> torch.Tensor:
        """Score per batch element, shape ``[B]`` (higher is better)."""
        raise NotImplementedError

    def validate(self, shapes: Shapes, batch: int) -> None:
        """Raise a :class:`FeatvizError` if an index is out of range for these shapes."""

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.score(acts)

    # --- algebra -------------------------------------------------------------------
    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return Offset(self, float(other))
        return Sum([self, other])

    def __radd__(self, other: Objective | float) -> Objective:
        return self.__add__(other)

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-1.0) * other

    def __rsub__(self, other: float) -> Objective:
        return (-1.0) * self + other

    def __neg__(self) -> Objective:
        return Scaled(self, -1.0)

    def __mul__(self, factor: float) -> Objective:
        if isinstance(factor, Objective):
            raise ConfigError("objectives multiply by numbers only; use + to combine two objectives")
        return Scaled(self, float(factor))

    def __rmul__(self, factor: float) -> Objective:
        return self.__mul__(factor)

    def __truediv__(self, divisor: float) -> Objective:
        return Scaled(self, 1.0 / float(divisor))

    def batch(self, index: int) -> Objective:
        """Apply this objective to batch element ``index`` only (others score 0)."""
        return OnBatch(self, index)

    def __repr__(self) -> str:
        return self.name


class Sum(Objective):
    def __init__(self, terms: Sequence[Objective]) -> None:
        flat: list[Objective] = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, Sum) else [t])
        self.terms = flat
        self.layers = frozenset().union(*(t.layers for t in flat))
        self.name = " + ".join(t.name for t in flat)

    def score(self, acts: Acts) -> torch.Tensor:
        total = self.terms[0].score(acts)
        for t in self.terms[1:]:
            total = total + t.score(acts)
        return total

    def validate(self, shapes: Shapes, batch: int) -> None:
        for t in self.terms:
            t.validate(shapes, batch)


class Scaled(Objective):
    def __init__(self, inner: Objective, factor: float) -> None:
        self.inner, self.factor = inner, factor
        self.layers = inner.layers
        self.name = f"-{inner.name}" if factor == -1.0 else f"{factor:g}*{inner.name}"

    def score(self, acts: Acts) -> torch.Tensor:
        return self.factor * self.inner.score(acts)

    def validate(self, shapes: Shapes, batch: int) -> None:
        self.inner.validate(shapes, batch)


class Offset(Objective):
    def __init__(self, inner: Objective, offset: float) -> None:
        self.inner, self.offset = inner, offset
        self.layers = inner.layers
        self.name = f"{inner.name}{offset:+g}"

    def score(self, acts: Acts) -> torch.Tensor:
        return self.inner.score(acts) + self.offset

    def validate(self, shapes: Shapes, batch: int) -> None:
        self.inner.validate(shapes, batch)


class OnBatch(Objective):
    def __init__(self, inner: Objective, index: int) -> None:
        self.inner, self.index = inner, int(index)
        self.layers = inner.layers
        self.name = f"{inner.name}@batch{self.index}"

    def score(self, acts: Acts) -> torch.Tensor:
        full = self.inner.score(acts)
        mask = torch.zeros_like(full)
        mask[self.index] = 1.0
        return full * mask

    def validate(self, shapes: Shapes, batch: int) -> None:
        if not 0 <= self.index < batch:
            raise UnitOutOfRangeError(f"objective batch={self.index} is outside the batch of {batch}; use 0..{batch - 1} or raise batch")
        self.inner.validate(shapes, batch)


def _check_unit(layer: str, unit: int, shape: tuple[int, ...], what: str = "channel") -> None:
    if not 0 <= unit < shape[0]:
        raise UnitOutOfRangeError(f"{what} {unit} is out of range for layer {layer!r} with {shape[0]} {what}s; use 0..{shape[0] - 1}")


class LayerObjective(Objective):
    """Objectives on one layer's activation ``[B, C, H, W]`` (or ``[B, C]``)."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.layers = frozenset([layer])

    def validate(self, shapes: Shapes, batch: int) -> None:
        if self.layer not in shapes:
            return
        self._validate_shape(shapes[self.layer])

    def _validate_shape(self, shape: tuple[int, ...]) -> None:
        pass


class Neuron(LayerObjective):
    """``layer[x, y, unit]``: one spatial position of one channel (the centre by default)."""

    def __init__(self, layer: str, unit: int, x: int | None = None, y: int | None = None) -> None:
        super().__init__(layer)
        self.unit, self.x, self.y = int(unit), x, y
        self.name = f"neuron({layer}:{unit}" + ("" if x is None and y is None else f"@{x},{y}") + ")"

    def _validate_shape(self, shape: tuple[int, ...]) -> None:
        _check_unit(self.layer, self.unit, shape)
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
        _check_unit(self.layer, self.unit, shape)

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
        _check_unit(LOGITS, self.unit, shape, what="class")

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


def _apply_modifiers(obj: Objective, negate: bool, batch: int | None, weight: float) -> Objective:
    if weight != 1.0:
        obj = weight * obj
    if negate:
        obj = -obj
    if batch is not None:
        obj = obj.batch(batch)
    return obj


def _from_directions(name: str) -> Callable[..., Objective]:
    """A constructor of :mod:`featviz.directions`, looked up at call time (it imports this module)."""

    def build(**kwargs: object) -> Objective:
        from featviz import directions

        return getattr(directions, name)(**kwargs)

    return build


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "neuron": lambda layer, unit, x=None, y=None, **_: Neuron(layer, unit, x, y),
    "channel": lambda layer, unit, **_: Channel(layer, unit),
    "layer": lambda layer, **_: DeepDream(layer),
    "deepdream": lambda layer, **_: DeepDream(layer),
    "class_logit": lambda unit, **_: ClassLogit(unit),
    "class_prob": lambda unit, **_: ClassProb(unit),
    "direction": _from_directions("direction_from_config"),
    "random_direction": _from_directions("random_direction_from_config"),
    "interpolate": _from_directions("interpolate_from_config"),
}


def build_objective(
    kind: str,
    negate: bool = False,
    batch: int | None = None,
    weight: float = 1.0,
    terms: Sequence[Mapping[str, object]] | None = None,
    **kwargs: object,
) -> Objective:
    """Build an objective from config values.

    ``kind`` is one of :data:`OBJECTIVES` or ``sum``, whose ``terms`` are each a mapping of
    the same form (so a config can say "unit 3 on image 0 plus unit 4 on image 1").
    ``negate`` minimizes instead, ``batch`` restricts to one image, ``weight`` scales.
    """
    if kind == "sum":
        if not terms:
            raise ConfigError("objective kind 'sum' needs a non-empty 'terms' list")
        obj: Objective = Sum([build_objective(**dict(t)) for t in terms])  # type: ignore[arg-type]
    else:
        if kind not in OBJECTIVES:
            raise ConfigError(f"unknown objective kind {kind!r}; use one of {sorted([*OBJECTIVES, 'sum'])}")
        try:
            obj = OBJECTIVES[kind](**kwargs)
        except TypeError as exc:
            raise ConfigError(f"objective {kind!r}: {exc}; see conf/objective/{kind}.yaml for its fields") from exc
    return _apply_modifiers(obj, bool(negate), batch, float(weight))
