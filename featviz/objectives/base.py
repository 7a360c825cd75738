"""The objective algebra: an Objective maps activations to one score per batch element.

Objectives compose with +, -, scalar * and .batch(i), as in Lucid, and each declares the
layers it reads, which is where the model's forward pass stops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from featviz.errors import ConfigError, UnitOutOfRangeError

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


def check_unit(layer: str, unit: int, shape: tuple[int, ...], what: str = "channel") -> None:
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
