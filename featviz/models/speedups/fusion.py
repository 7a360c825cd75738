"""Convolution + activation fused into one oneDNN call on the CPU.

Why: on a CPU most of a visualization step is memory traffic, not arithmetic. Eager PyTorch
writes a convolution's output, then reads it back for the ReLU6 and writes a second tensor.
oneDNN can apply the activation while the convolution's output is still in cache, and with
its weights packed once in its own blocked layout its kernels also skip a reorder per call
(the gain is measured in docs/performance.md).

The backward stays exact: the activation's gradient mask is read from the fused output
(``0 < y < 6`` holds exactly where the pre-activation was inside the clamp), and the input
gradient is the convolution's own backward (a matrix product for 1x1 convolutions).

:func:`fuse_conv_activations` finds conv -> activation pairs by watching one probe pass (the
activation's input must be the very tensor the convolution returned, possibly passed on by
an ``nn.Identity`` such as a folded BatchNorm), swaps the convolution for a
:class:`FusedConvAct` under the same name and the activation for an ``nn.Identity``, and
checks that the network's output and input gradient did not change. A hook on the
activation's name still sees the activated tensor; the convolution's name (and the
Identity's) would now see the activated tensor too, so such names must be unfused first:
:func:`unfuse` does that, and :class:`featviz.models.FeatureModel` calls it for any layer an
objective asks for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from featviz.models.speedups.chains import find_chains, output_tensor, set_submodule

# The activations whose gradient mask can be read from their output, so the pre-activation
# never has to be kept: ReLU (y > 0) and Hardtanh, ReLU6 among them (lo < y < hi).
_ACTIVATIONS = (nn.ReLU, nn.Hardtanh)

#: Below this many output elements a layer runs unfused: a oneDNN post-op call has a fixed
#: extra cost per call that the saved pass over the activation repays only on large layers
#: (the measurement is in docs/performance.md).
MIN_FUSED_ELEMENTS = 200_000


def _post_op(act: nn.Module) -> tuple[str, list[float]]:
    """oneDNN's post-op name and scalars for ``act``."""
    if isinstance(act, nn.Hardtanh):
        return "hardtanh", [float(act.min_val), float(act.max_val)]
    return "relu", []


def _conv_args(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """``(weight, symmetric padding)`` that make ``F.conv2d`` equal ``conv(x)``, or None.

    A convolution that pads by itself per input (TF 'SAME') says how through a
    ``symmetric_args(x)`` method; others must pad with zeros by a fixed amount.
    """
    symmetric_args = getattr(conv, "symmetric_args", None)
    if callable(symmetric_args):
        return symmetric_args(x)
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    return conv.weight, (int(conv.padding[0]), int(conv.padding[1]))


class _ConvActFunction(torch.autograd.Function):
    """``act(conv(x))`` in one oneDNN call; the backward gives the input gradient only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None,
                spec: tuple[Any, ...]) -> torch.Tensor:
        stride, padding, dilation, groups, pointwise, op, scalars = spec
        if pointwise:
            n, c, h, w = x.shape
            y = torch.ops.mkldnn._linear_pointwise(x.permute(0, 2, 3, 1).reshape(-1, c), packed, bias, op, scalars, "")
            y = y.view(n, h, w, -1).permute(0, 3, 1, 2)
        else:
            y = torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, stride, dilation, groups, op, scalars, "")
        ctx.save_for_backward(x, weight, y)
        ctx.spec = spec
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors
        stride, padding, dilation, groups, pointwise, op, scalars = ctx.spec
        if op == "hardtanh":
            grad = torch.ops.aten.hardtanh_backward(grad, y, scalars[0], scalars[1])
        elif op == "relu":
            grad = torch.ops.aten.threshold_backward(grad, y, 0.0)
        if pointwise:
            n, c, h, w = grad.shape
            gx = grad.permute(0, 2, 3, 1).reshape(-1, c) @ weight.flatten(1)
            gx = gx.view(n, h, w, -1).permute(0, 3, 1, 2)
        else:
            gx = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, [0, 0], groups, [True, False, False]
            )[0]
        return gx, None, None, None, None


class FusedConvAct(nn.Module):
    """``act(conv(x))``, fused on the CPU; plain ``act(conv(x))`` wherever it cannot be.

    The convolution and activation are kept outside the module tree, so no layer name is
    added, while ``weight`` and ``bias`` are registered here as the very same parameters
    (moving the model moves them for both). The fused path runs for a float32,
    channels-last input on the CPU with frozen weights and no autocast.
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.weight = conv.weight
        self.register_parameter("bias", conv.bias)
        object.__setattr__(self, "conv", conv)
        object.__setattr__(self, "act", act)
        self._post_op = _post_op(act)
        #: Set by :func:`fuse_conv_activations` while it checks the fused kernels on a probe
        #: that may be small: every size runs fused then, not only the large ones.
        self.checking = False
        self._packed: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]] | None] = {}

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]] | None:
        """(weight, oneDNN's blocked copy of it, call spec) for inputs shaped like ``x``, or
        None where the plain path is the faster (or the only) one.

        Decided and made once per input shape and kept while the weight is unchanged:
        packing (and, for a lopsided 'SAME' convolution, padding the kernel) on every call
        would cost more than the fusion saves.
        """
        key = (tuple(x.shape), self.weight.data_ptr(), self.weight._version)
        if key in self._packed:
            return self._packed[key]
        if len(self._packed) >= 8:  # many input sizes in one process (a size sweep)
            self._packed.clear()
        self._packed[key] = self._pack(x)
        return self._packed[key]

    def _pack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]] | None:
        conv = self.conv
        args = _conv_args(conv, x)
        if args is None:
            return None
        weight, padding = args
        n, _, h, w = x.shape
        out_h, out_w = ((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in zip(
            (h, w), padding, conv.dilation, weight.shape[-2:], conv.stride))
        if n * conv.out_channels * out_h * out_w < MIN_FUSED_ELEMENTS and not self.checking:
            return None
        weight = weight.detach()
        pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and padding == (0, 0) and conv.groups == 1
        if pointwise:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.flatten(1), x.shape[0] * x.shape[2] * x.shape[3])
        else:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight, list(padding), list(conv.stride), list(conv.dilation), conv.groups, list(x.shape)
            )
        spec = (list(conv.stride), list(padding), list(conv.dilation), conv.groups, pointwise, *self._post_op)
        return weight, packed, spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A hooked activation (featviz.models.redirected) must run as itself: plain path.
        prepared = self._prepare(x) if _fusable_input(x, self.weight) and not self.act._forward_hooks else None
        if prepared is None:
            return self.act(self.conv(x))
        weight, packed, spec = prepared
        return _ConvActFunction.apply(x, weight, packed, self.bias, spec)


def _fusable_input(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not weight.requires_grad
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


@dataclass(frozen=True)
class FusedPair:
    """A convolution now fused with its activation; ``names`` must be unfused to be read."""

    conv: str
    act: str
    fused: FusedConvAct
    names: frozenset[str] = field(default_factory=frozenset)


def find_conv_act_pairs(net: nn.Module, probe: torch.Tensor) -> list[tuple[str, str, frozenset[str]]]:
    """``(conv, activation, names that return the conv's output)`` for each fusable chain
    (see :func:`featviz.models.speedups.chains.find_chains`)."""
    return find_chains(net, probe, (nn.Conv2d,), _ACTIVATIONS)


def fuse_conv_activations(net: nn.Module, probe: torch.Tensor, keep: Iterable[str] = ()) -> list[FusedPair]:
    """Fuse every conv -> ReLU/ReLU6/Hardtanh chain of ``net`` in place; return the pairs.

    Chains whose convolution (or an Identity between) is named in ``keep`` stay as they are.
    ``probe`` should be laid out as the network will be run (channels-last), so the check
    exercises the fused path. If the fused network's output or input gradient on the probe
    differs beyond float rounding, or the fused call fails, everything is put back and
    nothing is fused.
    """
    keep = set(keep)
    found = [(c, a, n) for c, a, n in find_conv_act_pairs(net, probe) if not (n & keep)]
    if not found:
        return []
    before, grad_before = _output_and_grad(net, probe)
    pairs = []
    for conv_name, act_name, between in found:
        conv, act = net.get_submodule(conv_name), net.get_submodule(act_name)
        pair = FusedPair(conv_name, act_name, FusedConvAct(conv, act), between)  # type: ignore[arg-type]
        set_submodule(net, conv_name, pair.fused)
        set_submodule(net, act_name, nn.Identity())
        pairs.append(pair)
        pair.fused.checking = True
    try:
        after, grad_after = _output_and_grad(net, probe)
    except RuntimeError:  # a torch build whose oneDNN lacks these post-ops: stay unfused
        unfuse(net, pairs)
        return []
    finally:
        for pair in pairs:
            pair.fused.checking = False
            pair.fused._packed.clear()
    scale = float(before.abs().max()), float(grad_before.abs().max())
    if not (torch.allclose(before, after, rtol=1e-3, atol=1e-4 * scale[0])
            and torch.allclose(grad_before, grad_after, rtol=1e-3, atol=1e-4 * scale[1])):
        unfuse(net, pairs)
        return []
    return pairs


def unfuse(net: nn.Module, pairs: Iterable[FusedPair]) -> None:
    """Put fused convolutions and their activations back as they were."""
    for pair in pairs:
        set_submodule(net, pair.conv, pair.fused.conv)
        set_submodule(net, pair.act, pair.fused.act)


def _output_and_grad(net: nn.Module, probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = probe.detach().clone().requires_grad_()
    out = output_tensor(net(x))
    (grad,) = torch.autograd.grad(out.square().mean(), x)
    return out.detach(), grad
