"""Finding chains of modules (conv -> norm -> activation) by a probe forward pass, for folding and fusion."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


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


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


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
