"""Directions in activation space: a weighted sum of channels (neuron arithmetic) or a random direction,
optionally rewarding the angle as well as the dot product (Lucid's cossim power)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.models.layout import grid_of
from featviz.objectives.base import Acts, LayerObjective

# Cosine similarities are floored before the power: a negative base has no real power, and
# the floor keeps a (small) gradient towards the direction where the dot product is
# negative. 0.1 is the floor Lucid uses.
COSSIM_FLOOR = 0.1


_EPS = 1e-4


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
        act = grid_of(acts, self.layer)  # [B, C, H, W] whatever the layer's layout
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
