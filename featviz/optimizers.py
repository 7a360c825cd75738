"""``torch.optim`` optimizers without the import of ``torch._dynamo`` they make on first use.

PyTorch guards its optimizers' methods against ``torch.compile`` tracing (``step``,
``zero_grad``, ``add_param_group``, ``state_dict``, ``load_state_dict``), and each guard
imports ``torch._dynamo`` when first called, even when nothing is compiled: 1.5 s of every
featviz process on two cores, more than a quarter of its start-up. :func:`eager` gives a
subclass whose methods are the unguarded ones the guards wrap (``__wrapped__``), the
arithmetic untouched, so the images are bit-identical. With ``perf.compile`` the plain class
is used (compiling needs dynamo anyway); a method that is not torch's own keeps whatever
wraps it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.optim import Optimizer

#: The guarded methods of ``torch.optim.Optimizer`` and its subclasses.
GUARDED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
_TORCH_DIR = Path(torch.__file__).resolve().parent


@functools.cache
def eager(cls: type[Optimizer]) -> type[Optimizer]:
    """``cls`` with its compile guards taken off (one subclass per class, made once)."""
    body: dict[str, Any] = {"__doc__": f"{cls.__name__} without its torch.compile guards (featviz.optimizers.eager)."}
    for name in GUARDED:
        inner = _torch_inner(getattr(cls, name))
        if inner is not None:
            body[name] = inner
    step = _torch_inner(cls.step)
    if step is not None:
        body["step"] = _no_grad_step(step)
    return type(cls.__name__, (cls,), body)


def _torch_inner(method: Callable[..., Any]) -> Callable[..., Any] | None:
    """The function torch's guard wraps; None for anything else (a method of the user's own,
    or one a user's decorator wraps, is left as it is)."""
    inner = getattr(method, "__wrapped__", None)
    return inner if inner is not None and _in_torch(method) and _in_torch(inner) else None


def _in_torch(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s code is torch's (``functools.wraps`` copies names, not code)."""
    code = getattr(fn, "__code__", None)
    return code is not None and Path(code.co_filename).resolve().is_relative_to(_TORCH_DIR)



def _no_grad_step(step: Callable[..., Any]) -> Callable[..., Any]:
    """What the step's guard does besides importing dynamo: run with grad mode as the
    optimizer's ``differentiable`` option says (off, normally)."""

    @functools.wraps(step)
    def run(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable", False))):
            return step(self, *args, **kwargs)

    return run
