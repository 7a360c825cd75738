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
from collections.abc import Callable, Iterable
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


def find_chains(
    net: nn.Module,
    probe: torch.Tensor,
    producers: tuple[type[nn.Module], ...],
    consumers: tuple[type[nn.Module], ...],
    accept: Callable[[nn.Module], bool] = lambda _module: True,
) -> list[tuple[str, str, frozenset[str]]]:
    """``(producer, consumer, names)`` for each consumer fed directly by a producer.

    A chain counts only if, during one forward pass of ``probe``, the consumer's input is
    the very tensor object the producer returned (an ``nn.Identity`` between them passes
    that object on), each of the two ran once, and nothing else of the consumers' kind reads
    that tensor. ``names`` lists every module that returned the tensor (the producer, an
    Identity, a wrapper): after rewriting the chain, all of them would return something
    else. ``accept`` filters the consumers.
    """
    names = {m: n for n, m in net.named_modules() if n}
    returned: dict[int, list[str]] = {}
    alive: list[torch.Tensor] = []  # every output stays alive during the pass, so ids stay unique
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    links: list[tuple[str, str, int]] = []

    def count(module: nn.Module, _inputs: object) -> None:
        calls[names[module]] = calls.get(names[module], 0) + 1

    def any_hook(module: nn.Module, _inputs: object, output: object) -> None:
        if torch.is_tensor(output):
            returned.setdefault(id(output), []).append(names[module])
            alive.append(output)

    def producer_hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        produced[id(output)] = (names[module], output)

    def consumer_pre_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        source = produced.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0]:
            links.append((source[0], names[module], id(inputs[0])))

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(count))
        handles.append(module.register_forward_hook(any_hook))
        if isinstance(module, producers):
            handles.append(module.register_forward_hook(producer_hook))
        elif isinstance(module, consumers) and accept(module):
            handles.append(module.register_forward_pre_hook(consumer_pre_hook))
    try:
        with torch.no_grad():
            net(probe)
    finally:
        for h in handles:
            h.remove()
    sources = [p for p, _, _ in links]
    return [
        (p, c, frozenset(returned.get(tensor_id, [p])))
        for p, c, tensor_id in links
        if calls.get(p) == 1 and calls.get(c) == 1 and sources.count(p) == 1
    ]


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

