"""Directions in activation space, and objectives that make neurons interact.

The article's "Interaction between Neurons" treats a layer's activations at one position as
a vector whose basis directions are the neurons; any other vector is a "direction" that can
be visualized just like a neuron. This module holds the objectives for that view:

* :class:`Direction`: the dot product of the activations with a vector, optionally times
  the cosine similarity to a power so the activation must *point* along the vector rather
  than merely grow in its positive components. A sparse vector ``{unit: weight}`` is neuron
  arithmetic: ``{3: 1, 7: 1}`` is channel 3 + channel 7 (``units=[3, 7]`` in a config);
* :class:`RandomDirection`: a unit vector drawn from its own seed;
* :class:`Interpolate`: a batch whose objectives blend from A (first image) to B (last);
* :class:`Alignment`: a penalty on differences between neighbouring images of a batch, so
  interpolation frames change only where the blend makes them change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.objectives import Acts, LayerObjective, Objective, Shapes

# Cosine similarities are floored before the power: a negative base has no real power, and
# the floor keeps a (small) gradient towards the direction where the dot product is
# negative. 0.1 is the floor Lucid uses.
COSSIM_FLOOR = 0.1
_EPS = 1e-4


def _require_batch(what: str, batch: int) -> None:
    if batch < 2:
        raise ConfigError(f"{what}; set batch >= 2 (e.g. batch=6)")


class DirectionBase(LayerObjective):
    """``mean over positions of <activation, v> * max(cossim, 0.1) ** cossim_pow``.

    Subclasses say what ``v`` is (:meth:`vector`); ``cossim_pow`` 0 scores the plain
    projection, larger values reward the angle between activation and ``v`` too.
    """

    def __init__(self, layer: str, cossim_pow: float = 0.0) -> None:
        super().__init__(layer)
        if not float(cossim_pow) >= 0:
            raise ConfigError(f"objective.cossim_pow={cossim_pow} must be >= 0 (0 = plain dot product)")
        self.cossim_pow = float(cossim_pow)

    def vector(self, channels: int) -> torch.Tensor:
        """The direction as a dense ``[channels]`` tensor."""
        raise NotImplementedError

    def _suffix(self) -> str:
        return f", cossim^{self.cossim_pow:g})" if self.cossim_pow else ")"

    def projection(self, act: torch.Tensor) -> torch.Tensor:
        """Dot product of each position's activation vector with the direction: ``[B, H, W]``.

        ``[B, C]`` activations (fully connected layers, logits) give ``[B, 1, 1]``.
        """
        if act.dim() == 2:
            act = act[:, :, None, None]
        return torch.einsum("bchw,c->bhw", act, self.vector(act.shape[1]).to(act))

    def score(self, acts: Acts) -> torch.Tensor:
        act = acts[self.layer]
        if act.dim() == 2:
            act = act[:, :, None, None]
        dot = self.projection(act)
        if self.cossim_pow:
            v = self.vector(act.shape[1]).to(act)
            cos = dot / (act.norm(dim=1) + _EPS) / (v.norm() + _EPS)
            dot = dot * cos.clamp(min=COSSIM_FLOOR) ** self.cossim_pow
        return dot.flatten(1).mean(1)


class Direction(DirectionBase):
    """A given direction: one weight per channel, or a sparse ``{channel: weight}`` mapping.

    The vector is used as given (not normalized), so ``{3: 1.0}`` scores exactly like
    ``Channel(layer, 3)`` and ``{3: 1.0, 7: 0.5}`` like ``channel 3 + 0.5 * channel 7`` when
    ``cossim_pow`` is 0: neuron arithmetic is a direction.
    """

    def __init__(self, layer: str, vector: Sequence[float] | Mapping[int, float] | torch.Tensor, cossim_pow: float = 0.0) -> None:
        super().__init__(layer, cossim_pow)
        self.sparse: dict[int, float] | None = None
        self.dense: torch.Tensor | None = None
        if isinstance(vector, Mapping):
            if not vector:
                raise ConfigError("objective.units is empty; list at least one channel, e.g. objective.units=[3]")
            self.sparse = {int(k): float(v) for k, v in vector.items()}
            label = "+".join(f"{w:g}*{u}" for u, w in self.sparse.items())
        else:
            self.dense = torch.as_tensor(vector, dtype=torch.float32).flatten()
            if self.dense.numel() == 0:
                raise ConfigError("objective.vector is empty; give one weight per channel of the layer")
            label = f"vec[{self.dense.numel()}]"
        self.name = f"direction({layer}:{label}" + self._suffix()

    def vector(self, channels: int) -> torch.Tensor:
        if self.dense is not None:
            return self.dense
        assert self.sparse is not None
        v = torch.zeros(channels)
        for unit, weight in self.sparse.items():
            v[unit] = weight
        return v

    def _validate_shape(self, shape: tuple[int, ...]) -> None:
        channels = shape[0]
        if self.sparse is not None:
            for unit in self.sparse:
                if not 0 <= unit < channels:
                    raise UnitOutOfRangeError(
                        f"direction unit {unit} is out of range for layer {self.layer!r} with {channels} channels; use 0..{channels - 1}"
                    )
        elif self.dense is not None and self.dense.numel() != channels:
            raise ConfigError(
                f"objective.vector has {self.dense.numel()} entries but layer {self.layer!r} has {channels} channels; "
                f"give one weight per channel, or list channels with objective.units=[3,[17,0.5]] (and objective.vector=null)"
            )


class RandomDirection(DirectionBase):
    """A unit-length direction drawn from a normal distribution with its own ``seed``.

    The vector belongs to the objective, not to the run: it comes from a generator seeded by
    ``seed`` alone, so runs with different ``cfg.seed`` (and a dataset-examples search) see
    the same direction, and the run's generator stream is left untouched. It is drawn to fit
    whatever channel count the layer has.
    """

    def __init__(self, layer: str, seed: int = 0, cossim_pow: float = 0.0) -> None:
        super().__init__(layer, cossim_pow)
        self.seed = int(seed)
        self._cache: dict[int, torch.Tensor] = {}
        self.name = f"random_direction({layer}:seed={self.seed}" + self._suffix()

    def vector(self, channels: int) -> torch.Tensor:
        if channels not in self._cache:
            v = torch.randn(channels, generator=torch.Generator().manual_seed(self.seed))
            self._cache[channels] = v / v.norm()
        return self._cache[channels]


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
        _require_batch("objective=interpolate blends from the first image of the batch to the last", batch)
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
        _require_batch("regularizer.alignment pulls neighbouring images of the batch together", batch)


# --- config constructors (the `OBJECTIVES` registry in featviz.objectives points here) ------
def parse_units(units: Mapping[int, float] | Sequence[object]) -> dict[int, float]:
    """``[3, [17, 0.5]]`` (a unit alone weighs 1) or ``{3: 1.0, 17: 0.5}`` -> ``{3: 1.0, 17: 0.5}``.

    Configs use the list form: Hydra *merges* a dict override into the dict already there
    (``units={17: 1}`` over ``{3: 1}`` would give both), while a list override replaces.
    A unit listed twice adds up its weights.
    """
    if isinstance(units, Mapping):
        return {int(k): float(v) for k, v in units.items()}
    out: dict[int, float] = {}
    for entry in units:
        if isinstance(entry, (int, str)) and not isinstance(entry, bool):
            unit, weight = entry, 1.0
        elif isinstance(entry, Sequence) and len(entry) == 2:
            unit, weight = entry
        else:
            raise ConfigError(f"objective.units entry {entry!r}: use a channel (weight 1) or [channel, weight], e.g. units=[3,[17,0.5]]")
        try:
            out[int(unit)] = out.get(int(unit), 0.0) + float(weight)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"objective.units entry {entry!r}: channel must be an integer and weight a number") from None
    return out


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


def interpolate_from_config(a: Mapping[str, object] | None = None, b: Mapping[str, object] | None = None, **_: object) -> Interpolate:
    """``objective=interpolate``: ``a`` and ``b`` are objective mappings of any kind."""
    from featviz.objectives import build_objective

    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise ConfigError("objective=interpolate needs objective.a and objective.b, each an objective like {kind: channel, layer: ..., unit: ...}")
    return Interpolate(build_objective(**dict(a)), build_objective(**dict(b)))  # type: ignore[arg-type]
