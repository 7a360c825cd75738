"""Which axis of a layer's output holds the channels: NCHW maps, NHWC maps, tokens or vectors.

An objective reads a channel, a position or a whole layer, so it must know which axis is
which. CNNs give ``[B, C, H, W]``; Swin's stages and ConvNeXt's block internals give
``[B, H, W, C]`` (channels last, as their LayerNorm and Linear layers want); a ViT encoder
gives tokens ``[B, N, D]`` with ``N = prefix + H * W``: the class token(s) first, then the
patch grid row by row. A :class:`Layout` says which, and :meth:`Layout.grid` turns each into
the ``[B, C, H, W]`` view that every spatial objective is written for, so one objective
serves every architecture.

Layouts are found from the shapes a layer gives (:func:`infer`), not from a table of
architectures, so custom models get them too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch

Kind = Literal["nchw", "nhwc", "tokens", "vector"]

#: The most tokens a layer may put before its patch grid (class, distillation, register tokens).
MAX_PREFIX = 16

V = TypeVar("V")


@dataclass(frozen=True)
class Layout:
    """Where the channels of one layer's output are; ``prefix``: tokens before the patch grid."""

    kind: Kind
    prefix: int = 0

    def grid(self, act: torch.Tensor) -> torch.Tensor:
        """``act`` as ``[B, C, H, W]`` (a view: gradients flow back into ``act``).

        Tokens lose their prefix (the class token is not a position on the image) and their
        patches are laid on the grid; vectors become ``[B, C, 1, 1]``.
        """
        if self.kind == "vector":
            return act.reshape(act.shape[0], -1)[:, :, None, None]
        if self.kind == "nhwc":
            return act.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            patches = act[:, self.prefix :]
            h, w = token_grid(patches.shape[1])
            return patches.transpose(1, 2).reshape(act.shape[0], act.shape[2], h, w)
        return act if act.dim() == 4 else act.reshape(*act.shape[:3], -1)

    def chw(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The ``(C, H, W)`` of an output of ``shape`` (without batch); ``(C,)`` for a vector."""
        if self.kind == "vector":
            return (math.prod(shape),)
        if self.kind == "nhwc":
            return (shape[2], shape[0], shape[1])
        if self.kind == "tokens":
            return (shape[1], *token_grid(shape[0] - self.prefix))
        return (shape[0], shape[1], math.prod(shape[2:]))

    def describe(self, chw: tuple[int, ...]) -> str:
        """``nchw``, ``nhwc``, ``vector`` or ``tokens 1+14x14`` (prefix + grid) for the ``(C, H, W)`` of :meth:`chw`."""
        if self.kind != "tokens":
            return self.kind
        h, w = chw[1], chw[2]
        return f"tokens {self.prefix}+{h}x{w}" if self.prefix else f"tokens {h}x{w}"


def token_grid(patches: int) -> tuple[int, int]:
    """The ``(H, W)`` grid of ``patches`` tokens: square when it can be, else one row."""
    side = math.isqrt(patches)
    return (side, side) if side * side == patches else (1, patches)


def token_prefix(tokens: int) -> int:
    """How many of ``tokens`` come before a square patch grid (1 + 14x14 -> 1; 196 -> 0).

    The smallest count, at most the grid's side, that leaves a square: one class token
    plus ``g x g`` patches is never itself a square, so the class token is always found.
    None fits (a 1-D sequence of 7): 0, and the tokens lie on one row.
    """
    for prefix in range(min(MAX_PREFIX, tokens - 1) + 1):
        side = math.isqrt(tokens - prefix)
        if side * side == tokens - prefix and prefix <= side:
            return prefix
    return 0


def infer(shape: tuple[int, ...], input_hw: tuple[int, int]) -> Layout | None:
    """The layout of an output of ``shape`` (without batch) for a square input; None if unsure.

    ``(C,)`` is a vector, ``(N, D)`` tokens. A 3-d shape is NCHW when its last two sides
    are equal and differ from the first, NHWC when its first two are equal and differ from
    the last (``56x56x96`` is Swin's first stage). Equal sides everywhere, a non-square
    input or an odd shape: None, and :func:`resolve` decides from a second input size.
    """
    if len(shape) == 1:
        return Layout("vector")
    if len(shape) == 2:
        return Layout("tokens", token_prefix(shape[0]))
    if len(shape) == 3 and input_hw[0] == input_hw[1]:
        a, b, c = shape
        if b == c != a:
            return Layout("nchw")
        if a == b != c:
            return Layout("nhwc")
    return None


def resolve(shape: tuple[int, ...], other: tuple[int, ...] | None) -> Layout:
    """The layout from the shapes at two input sizes: the channel axis is the one that stays.

    ``other`` None (the network takes one size only): NCHW, the convention of CNNs.
    """
    if other is not None and len(other) == len(shape) == 3:
        if shape[0] == other[0] and shape[1:] != other[1:]:
            return Layout("nchw")
        if shape[2] == other[2] and shape[:2] != other[:2]:
            return Layout("nhwc")
    return Layout("nchw")


def guess(act: torch.Tensor) -> Layout:
    """The layout of a bare tensor with a batch axis (no model to ask): NCHW for 4-d."""
    if act.dim() == 2:
        return Layout("vector")
    if act.dim() == 3:
        return Layout("tokens", token_prefix(act.shape[1]))
    return Layout("nchw")


class LayerMap(dict[str, V]):
    """Per-layer values (activations, shapes) that also carry each layer's :class:`Layout`.

    :meth:`featviz.models.FeatureModel.forward` returns one, so objectives know how to read
    each activation; a plain dict works too (every layout is then guessed from its tensor).
    """

    def __init__(self, values: Mapping[str, V], layouts: Mapping[str, Layout]) -> None:
        super().__init__(values)
        self.layouts = {k: layouts[k] for k in values if k in layouts}


def layout_of(values: Mapping[str, object], layer: str) -> Layout:
    """The layout ``values`` records for ``layer``, else one guessed from its tensor."""
    known = getattr(values, "layouts", {}).get(layer)
    if known is not None:
        return known
    value = values[layer]
    return guess(value) if torch.is_tensor(value) else Layout("nchw")


def grid_of(acts: Mapping[str, torch.Tensor], layer: str) -> torch.Tensor:
    """``acts[layer]`` as ``[B, C, H, W]``, whatever the layer's layout."""
    return layout_of(acts, layer).grid(acts[layer])
