"""Objectives: what a render maximizes. An Objective maps activations to one score per batch element.

``base`` holds the algebra (``+``, ``-``, scalar ``*``, ``.batch(i)``), ``units`` the
single-unit objectives, ``directions`` directions in activation space, ``batch`` the terms
that compare the images of a batch. :func:`build_objective` builds one by kind name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from featviz.errors import ConfigError
from featviz.objectives.base import (
    Acts,
    LayerObjective,
    Objective,
    Offset,
    OnBatch,
    Scaled,
    Shapes,
    Sum,
)
from featviz.objectives.batch import (
    Alignment,
    GramDiversity,
    Interpolate,
    StyleDiversity,
)
from featviz.objectives.clip_text import ClipText, TextEncoder, clip_text
from featviz.objectives.directions import Direction, RandomDirection, parse_units
from featviz.objectives.units import (
    Channel,
    ClassLogit,
    ClassProb,
    DeepDream,
    Neuron,
    Token,
    channel,
    class_logit,
    class_prob,
    deepdream,
    neuron,
    token,
)

__all__ = [
    "Acts", "Alignment", "Channel", "ClipText", "ClassLogit", "ClassProb", "DeepDream", "Direction", "GramDiversity", "Interpolate",
    "LayerObjective", "Neuron", "OBJECTIVES", "Objective", "Offset", "OnBatch", "RandomDirection", "Scaled", "Shapes",
    "StyleDiversity", "Sum", "TextEncoder", "Token", "build_objective", "channel", "class_logit", "class_prob", "clip_text", "deepdream", "neuron", "token",
]


def direction_from_config(
    layer: str,
    vector: Sequence[float] | None = None,
    units: Mapping[int, float] | Sequence[object] | None = None,
    cossim_pow: float = 0.0,
    **_: object,
) -> Direction:
    """``objective=direction``: exactly one of ``vector`` (dense) or ``units`` (sparse, see :func:`parse_units`)."""
    if (vector is None) == (units is None):
        raise ConfigError(
            "objective=direction needs exactly one of objective.units=[3,[17,0.5]] (channels, optionally weighted) "
            "or objective.vector=[w0,w1,...] (one weight per channel; then set objective.units=null)"
        )
    return Direction(layer, parse_units(units) if units is not None else vector, cossim_pow)  # type: ignore[arg-type]


def random_direction_from_config(layer: str, seed: int = 0, cossim_pow: float = 0.0, **_: object) -> RandomDirection:
    return RandomDirection(layer, int(seed), float(cossim_pow))


def interpolate_from_config(
    a: Mapping[str, object] | None = None, b: Mapping[str, object] | None = None, encode_text: TextEncoder | None = None, **_: object
) -> Interpolate:
    """``objective=interpolate``: ``a`` and ``b`` are objective mappings of any kind."""
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise ConfigError("objective=interpolate needs objective.a and objective.b, each an objective like {kind: channel, layer: ..., unit: ...}")
    return Interpolate(build_objective(**dict(a), encode_text=encode_text), build_objective(**dict(b), encode_text=encode_text))  # type: ignore[arg-type]


def _apply_modifiers(obj: Objective, negate: bool, batch: int | None, weight: float) -> Objective:
    if weight != 1.0:
        obj = weight * obj
    if negate:
        obj = -obj
    if batch is not None:
        obj = obj.batch(batch)
    return obj


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "neuron": lambda layer, unit, x=None, y=None, **_: Neuron(layer, unit, x, y),
    "channel": lambda layer, unit, **_: Channel(layer, unit),
    "token": lambda layer, token=0, unit=None, **_: Token(layer, token, unit),
    "layer": lambda layer, **_: DeepDream(layer),
    "deepdream": lambda layer, **_: DeepDream(layer),
    "class_logit": lambda unit, **_: ClassLogit(unit),
    "class_prob": lambda unit, **_: ClassProb(unit),
    "direction": direction_from_config,
    "random_direction": random_direction_from_config,
    "interpolate": interpolate_from_config,
    "clip_text": lambda text, layer="embedding", encode_text=None, **_: clip_text(encode_text, text, layer),
}


def build_objective(
    kind: str,
    negate: bool = False,
    batch: int | None = None,
    weight: float = 1.0,
    terms: Sequence[Mapping[str, object]] | None = None,
    encode_text: TextEncoder | None = None,
    **kwargs: object,
) -> Objective:
    """Build an objective from config values.

    ``kind`` is one of :data:`OBJECTIVES` or ``sum``, whose ``terms`` are each a mapping of
    the same form (so a config can say "unit 3 on image 0 plus unit 4 on image 1").
    ``negate`` minimizes instead, ``batch`` restricts to one image, ``weight`` scales.
    ``encode_text`` (a CLIP model's ``text_encoder``) embeds the prompts of ``clip_text`` terms.
    """
    if kind == "sum":
        if not terms:
            raise ConfigError("objective kind 'sum' needs a non-empty 'terms' list")
        obj: Objective = Sum([build_objective(**dict(t), encode_text=encode_text) for t in terms])  # type: ignore[arg-type]
    else:
        if kind not in OBJECTIVES:
            raise ConfigError(f"unknown objective kind {kind!r}; use one of {sorted([*OBJECTIVES, 'sum'])}")
        try:
            obj = OBJECTIVES[kind](**kwargs, encode_text=encode_text)
        except TypeError as exc:
            raise ConfigError(f"objective {kind!r}: {exc}; see conf/objective/{kind}.yaml for its fields") from exc
    return _apply_modifiers(obj, bool(negate), batch, float(weight))
