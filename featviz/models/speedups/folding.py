"""BatchNorm folding: an eval BatchNorm after a convolution folded into its weights and bias (exact up to rounding)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from featviz.errors import ConfigError
from featviz.models.speedups.chains import find_chains, output_tensor, set_submodule

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class FoldedPair:
    """A convolution that absorbed the BatchNorm after it, with both originals kept for undoing."""

    conv: str
    bn: str
    original_conv: nn.Module
    original_bn: nn.Module


def find_conv_bn_pairs(net: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv name, batchnorm name)`` for every BatchNorm fed directly by a convolution."""
    # Without running statistics a BatchNorm normalizes by the batch: no fixed map to fold.
    return [(c, b) for c, b, _ in find_chains(net, probe, _CONVS, _BATCHNORMS,
                                              lambda bn: bn.running_mean is not None and bn.running_var is not None)]


def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    """Rewrite ``conv``'s weight and bias so that ``conv(x) == bn(old_conv(x))`` in eval mode."""
    assert isinstance(conv, _CONVS) and isinstance(bn, _BATCHNORMS)
    assert bn.running_mean is not None and bn.running_var is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale = scale * bn.weight
        shift = shift * bn.weight + bn.bias
    with torch.no_grad():
        old_bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        conv.bias = nn.Parameter(old_bias * scale + shift, requires_grad=False)


def fold_batchnorms(net: nn.Module, probe: torch.Tensor, keep: Iterable[str] = (), rtol: float = 1e-3, atol: float = 1e-4) -> list[FoldedPair]:
    """Fold each conv -> BatchNorm pair of eval-mode ``net`` in place; return the folded pairs.

    Args:
        net: the network, in eval mode (training-mode BatchNorm is not a fixed map).
        probe: an input the network accepts, used to find the pairs and to check the result.
        keep: module names whose own output must stay as it is: a convolution named here is
            not folded, since after folding it would return its BatchNorm's output.
        rtol, atol: how closely the folded network must reproduce the probe's output
            (float32 rounding only; a mismatch means a pair was not really a chain).

    The network is left untouched when the folded output does not match;
    :func:`unfold` puts a returned pair back as it was.
    """
    if net.training:
        raise ConfigError("BatchNorm folding needs an eval-mode network; call net.eval() first")
    keep = set(keep)
    pairs = [(c, b) for c, b in find_conv_bn_pairs(net, probe) if c not in keep]
    if not pairs:
        return []
    folded = [FoldedPair(c, b, copy.deepcopy(net.get_submodule(c)), net.get_submodule(b)) for c, b in pairs]
    with torch.no_grad():
        before = output_tensor(net(probe))
        for pair in folded:
            _fold_into(net.get_submodule(pair.conv), pair.original_bn)
            set_submodule(net, pair.bn, nn.Identity())
        after = output_tensor(net(probe))
    if not torch.allclose(before, after, rtol=rtol, atol=atol * float(before.abs().max())):
        unfold(net, folded)
        return []
    return folded


def unfold(net: nn.Module, pairs: Iterable[FoldedPair]) -> None:
    """Put folded convolutions and their BatchNorms back as they were before folding."""
    for pair in pairs:
        set_submodule(net, pair.conv, pair.original_conv)
        set_submodule(net, pair.bn, pair.original_bn)
