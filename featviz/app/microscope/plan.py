"""Which units a microscope renders, in which batches, and which shard renders each batch.

A batch's place in the whole plan fixes its seed (``seed + index``), so its images do not
depend on how many shards there are, which shard got it, or whether its shard was resumed.
Batches are dealt round-robin (batch ``b`` to shard ``b % shards``), so every shard gets a
share of each layer and shards of a model with cheap early and costly deep layers take
about the same time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featviz.errors import ConfigError, UnitOutOfRangeError, UnknownLayerError
from featviz.models.feature_model import FeatureModel


@dataclass(frozen=True)
class Batch:
    """Units of one layer optimized together; ``index`` is its place in the whole plan."""

    index: int
    layer: str
    units: tuple[int, ...]


def check_settings(m: Mapping[str, Any]) -> None:
    """The ``microscope`` block's numbers inside their ranges (``schemas.RANGES``), checked before
    the sweep launches: ``microscope.shards=0`` is otherwise a multirun of no jobs that exits 0."""
    from featviz.app.build import check_ranges

    check_ranges({"microscope": dict(m)})


def layer_units(model: FeatureModel, layers: Sequence[str], units: Sequence[int] | None, size: int) -> dict[str, list[int]]:
    """Each layer's units: all its channels, or ``units`` (each checked against every layer)."""
    if not layers:
        raise ConfigError("microscope.layers is empty; name the layers to render, e.g. microscope.layers=[blocks.1,blocks.6]")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"microscope.layers={list(layers)} names a layer twice; list each once")
    try:
        model.check_layers(layers)
    except UnknownLayerError as exc:
        raise UnknownLayerError(f"microscope.layers: {exc}") from None
    shapes = model.layer_shapes(size, layers)
    plan = {}
    for layer in layers:
        channels = shapes[layer][0]
        chosen = list(range(channels)) if units is None else [int(u) for u in units]
        bad = [u for u in chosen if not 0 <= u < channels]
        if bad:
            raise UnitOutOfRangeError(f"microscope.units {bad} out of range for layer {layer!r} with {channels} channels; use 0..{channels - 1}")
        if not chosen:
            raise ConfigError("microscope.units is empty; give unit indices, or null for every channel")
        plan[layer] = chosen
    return plan


def plan_batches(units: Mapping[str, Sequence[int]], batch: int) -> list[Batch]:
    """Every layer's units cut into batches of ``batch`` (a layer's last one may be smaller), layer by layer."""
    if batch < 1:
        raise ConfigError(f"microscope.batch={batch} must be >= 1")
    batches: list[Batch] = []
    for layer, chosen in units.items():
        for start in range(0, len(chosen), batch):
            batches.append(Batch(len(batches), layer, tuple(chosen[start : start + batch])))
    return batches


def shard_batches(batches: Sequence[Batch], shard: int, shards: int) -> list[Batch]:
    """The batches of shard ``shard`` of ``shards``."""
    if shards < 1:
        raise ConfigError(f"microscope.shards={shards} must be >= 1")
    if not 0 <= shard < shards:
        raise ConfigError(f"microscope.shard={shard} must be in 0..{shards - 1} (microscope.shards={shards})")
    return list(batches[shard::shards])
