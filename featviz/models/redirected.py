"""Redirected ReLU / ReLU6 gradients (Lucid's trick for the first steps of a render).

Why: a unit whose every position starts below zero (or, for ReLU6, above 6) gets an exact
gradient of zero, so the render cannot leave that state. The redirected backward keeps the
forward values exactly but, for an image whose gradient through this activation is zero
everywhere, passes the incoming gradient through wherever it points back into the active
range (towards > 0 from below, towards < 6 from above) and drops the part that would push
further out. An image with any non-zero exact gradient gets the exact gradient. After the
first steps the hooks come off and the network is exact again.

:class:`Redirection` hooks every ``nn.ReLU`` and ``nn.Hardtanh`` (``nn.ReLU6`` among them) of a
network, including those a :class:`~featviz.models.speedups.fusion.FusedConvAct` holds:
a hooked activation makes the fused module take its plain path, so fusion honours it.
Activations written as function calls (``F.relu`` in a ``forward``) are not modules and are
not redirected.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from featviz.errors import ConfigError
from featviz.models.speedups.fusion import FusedConvAct

_ACTIVATIONS = (nn.ReLU, nn.Hardtanh)


class _RedirectedClamp(torch.autograd.Function):
    """``x.clamp(low, high)`` with the redirected backward of the module docstring."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, low: float, high: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bounds = (low, high)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (x,) = ctx.saved_tensors
        low, high = ctx.bounds
        below = x <= low
        # The loss is minimized, so a positive dL/dy lowers y: away from the range when below.
        away = below & (grad > 0)
        outside = below
        if high is not None:
            above = x >= high
            outside = outside | above
            away = away | (above & (grad < 0))
        exact = grad.masked_fill(outside, 0.0)
        dead = exact.reshape(x.shape[0], -1).abs().amax(dim=1) == 0
        redirected = grad.masked_fill(away, 0.0)
        return torch.where(dead.view(-1, *[1] * (x.dim() - 1)), redirected, exact), None, None


def redirected_activation(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``module(x)`` (a ReLU or Hardtanh) with the redirected backward."""
    if isinstance(module, nn.Hardtanh):
        return _RedirectedClamp.apply(x, float(module.min_val), float(module.max_val))
    return _RedirectedClamp.apply(x, 0.0, None)


def activations(net: nn.Module) -> list[nn.Module]:
    """Every ReLU / Hardtanh module ``net`` runs, fused ones included, each once; none is an error."""
    found: dict[int, nn.Module] = {}
    for module in net.modules():
        held = module.act if isinstance(module, FusedConvAct) else module
        if isinstance(held, _ACTIVATIONS):
            found.setdefault(id(held), held)
    if not found:
        raise ConfigError(
            "model.redirected_relu is set but the network has no nn.ReLU / nn.ReLU6 / nn.Hardtanh modules to redirect; "
            "set model.redirected_relu=0"
        )
    return list(found.values())


class Redirection:
    """The hooks that redirect ``net``'s activations; :meth:`remove` makes it exact again."""

    def __init__(self, net: nn.Module) -> None:
        mods = activations(net)
        # An in-place activation overwrites its input, which the redirected backward reads.
        self._inplace = [(m, m.inplace) for m in mods if getattr(m, "inplace", False)]
        for m, _ in self._inplace:
            m.inplace = False
        self._handles = [m.register_forward_hook(self._hook) for m in mods]
        self.count = len(mods)

    @staticmethod
    def _hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> torch.Tensor:
        return redirected_activation(inputs[0], module)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for m, inplace in self._inplace:
            m.inplace = inplace
        self._inplace = []

