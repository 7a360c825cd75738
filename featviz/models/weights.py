"""Weight files: state dicts read without running pickled code, and loaded with errors that name the file.

Every builder (the registry's, timm's, open_clip's) loads a user's file through here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from featviz.errors import WeightsError


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``), with errors that name the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"weights file {str(p)!r} does not exist; pass model.weights=imagenet|none|/path/to/file.pth")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / pickled files
        raise WeightsError(
            f"weights file {str(p)!r} is corrupt or not a plain state dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); save it with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"weights file {str(p)!r} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights_into(net: nn.Module, state: dict[str, torch.Tensor], source: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """``load_state_dict`` with a message that says which architecture the file does not fit."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    try:
        result = net.load_state_dict(state, strict=not ignore_prefixes)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise WeightsError(
            f"weights {source!r} do not fit {type(net).__name__}: {first}; check model.name matches the file"
        ) from exc
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefixes)]
    if missing:
        raise WeightsError(f"weights {source!r} do not fit {type(net).__name__}: missing {missing[:3]}; check model.name")


def load_weights_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (no code can run) or a torch file (``weights_only=True``)."""
    p = Path(path).expanduser()
    if p.suffix != ".safetensors":
        return load_state_dict_file(p)
    if not p.is_file():
        raise WeightsError(f"weights file {str(p)!r} does not exist; pass model.weights=/path/to/file (.safetensors, .pth, .bin)")
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise WeightsError(f"weights file {str(p)!r} is not a readable safetensors file ({type(exc).__name__})") from exc
