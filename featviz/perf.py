"""Speed-ups that leave what a render computes unchanged (up to float rounding).

A visualized network is frozen and in eval mode, so each BatchNorm that directly follows a
convolution is a fixed per-channel affine map and can be folded into that convolution's
weight and bias. That removes every BatchNorm from the forward *and* the backward pass,
about a fifth of the network's time on CPU for EfficientNet-Lite0 (docs/performance.md). The folded BatchNorm becomes an
``nn.Identity`` under the same name, so a hook on it still sees the same values.

Pairs are found by watching one probe forward pass (a BatchNorm whose input is the very
tensor a convolution just returned) rather than by module names, so any network whose
convolutions feed their BatchNorms directly is covered (torchvision's ResNets, MobileNets,
EfficientNets, GoogLeNet, RegNets and the embedded EfficientNet-Lite0). Pre-activation
layouts (DenseNet's BN -> ReLU -> conv) are left as they are. Folding is then checked: the
folded network must reproduce the probe's output, or the original weights are restored.

This module also holds the options (:class:`PerfOptions`) and the process-wide allocator
setting (:func:`keep_freed_memory`); :mod:`featviz.fusion` fuses convolutions with their
activations after folding.
"""

from __future__ import annotations

import copy
import ctypes
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from featviz.errors import ConfigError

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class FoldedPair:
    """A convolution that absorbed the BatchNorm after it, with both originals kept for undoing."""

    conv: str
    bn: str
    original_conv: nn.Module
    original_bn: nn.Module


@dataclass(frozen=True)
class PerfOptions:
    """What :meth:`featviz.models.FeatureModel.optimize` may change, each switchable alone.

    Attributes:
        fold_bn: fold eval-mode BatchNorms into the convolutions that feed them.
        channels_last: keep activations in NHWC order, which oneDNN (CPU) and cuDNN (CUDA)
            convolutions run faster, depthwise ones especially.
        compile: wrap the network in ``torch.compile``; meant for CUDA (on the CPU it was
            measured slower, after minutes of compiling).
        amp: ``none`` or ``bf16``: run the network under bfloat16 autocast; meant for CUDA
            (slower on an AMX CPU as measured) and it changes results by bf16 rounding.
        fuse_geometry: resample once for jitter, scale, rotate, jitter and resize together
            (see :class:`featviz.transforms.Compose`); used where transforms are built.
        keep_freed_memory: let this process's allocator keep freed memory for reuse
            (:func:`keep_freed_memory`); process-wide, applied once.
        fuse_activations: run each convolution and the ReLU/ReLU6 after it as one oneDNN
            call on the CPU (:mod:`featviz.fusion`); CUDA runs them unfused.
    """

    fold_bn: bool = True
    channels_last: bool = True
    compile: bool = False
    amp: str = "none"
    fuse_geometry: bool = True
    keep_freed_memory: bool = True
    fuse_activations: bool = True

    def __post_init__(self) -> None:
        if self.amp not in ("none", "bf16"):
            raise ConfigError(f"perf.amp={self.amp!r}; use 'none' or 'bf16'")


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_freed_memory_kept = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process for the next allocation.

    Why: every step allocates and frees the same multi-megabyte activations. By default glibc
    serves blocks above its mmap threshold with fresh mappings and trims the top of the heap
    after each free, so the next step takes a page fault (and the kernel zeroes a page) for
    every 4 KiB it touches: about 500 faults per step at ``blocks.2`` of EfficientNet-Lite0,
    none after this call, and several percent of a step's CPU time. Allocating without mmap
    and never trimming keeps the pages mapped; the process then holds on to its peak memory
    until it exits, which suits a render process. Process-wide and applied once. Returns
    False where there is no glibc ``mallopt`` (macOS, Windows), where it changes nothing.
    """
    global _freed_memory_kept
    if _freed_memory_kept:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    applied = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, 2**31 - 1), mallopt(_M_TOP_PAD, 64 << 20)]
    _freed_memory_kept = all(applied)
    return _freed_memory_kept


def find_conv_bn_pairs(net: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv name, batchnorm name)`` for every BatchNorm fed directly by a convolution.

    A pair counts only if, during one forward pass of ``probe``, the BatchNorm's input is
    the tensor object the convolution returned, and each of the two modules ran once.
    """
    names = {m: n for n, m in net.named_modules() if n}
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    calls: dict[str, int] = {}
    handles = []

    def conv_hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        produced[id(output)] = (name, output)  # keep the tensor alive so its id stays unique

    def bn_pre_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        source = produced.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0]:
            pairs.append((source[0], name))

    for module, name in names.items():
        if isinstance(module, _CONVS):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, _BATCHNORMS) and module.running_mean is not None and module.running_var is not None:
            # Without running statistics a BatchNorm normalizes by the batch: no fixed map to fold.
            handles.append(module.register_forward_pre_hook(bn_pre_hook))
    probe_pass(net, probe, handles)
    convs = [c for c, _ in pairs]
    return [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1 and convs.count(c) == 1]


def probe_pass(net: nn.Module, probe: torch.Tensor, handles: Iterable[torch.utils.hooks.RemovableHandle]) -> None:
    """Run ``probe`` through ``net`` without gradients for the watching ``handles``, then remove them."""
    try:
        with torch.no_grad():
            net(probe)
    finally:
        for h in handles:
            h.remove()


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


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


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
            _set_submodule(net, pair.bn, nn.Identity())
        after = output_tensor(net(probe))
    if not torch.allclose(before, after, rtol=rtol, atol=atol * float(before.abs().max())):
        unfold(net, folded)
        return []
    return folded


def unfold(net: nn.Module, pairs: Iterable[FoldedPair]) -> None:
    """Put folded convolutions and their BatchNorms back as they were before folding."""
    for pair in pairs:
        _set_submodule(net, pair.conv, pair.original_conv)
        _set_submodule(net, pair.bn, pair.original_bn)


def output_tensor(output: object) -> torch.Tensor:
    """The main tensor of a network's output (torchvision's GoogLeNet returns a namedtuple)."""
    if torch.is_tensor(output):
        return output
    logits = getattr(output, "logits", None)
    if torch.is_tensor(logits):
        return logits
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    raise TypeError(f"cannot compare network outputs of type {type(output).__name__}")

