"""``model=timm``: any ``timm.create_model`` architecture as a :class:`FeatureModel`.

The input side, mean and std come from the model's own ``pretrained_cfg`` (so a DINOv2 ViT
gets 518 px and a CLIP-trained ConvNeXt its CLIP normalization without a table here); the
layer names are timm's module paths. ``weights``: ``imagenet`` is the architecture's
default pretrained tag (``resnet18.a1_in1k``; ``arch=NAME.TAG`` picks another), read from
the local Hugging Face cache with the hub offline; ``none`` is a seeded random init; a
path is a state dict (``.safetensors``, or a torch file loaded with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featviz.errors import UnknownModelError, WeightsError, closest
from featviz.models.feature_model import IMAGENET_MEAN, IMAGENET_STD, FeatureModel
from featviz.models.hub import hub_folder, hub_offline, require
from featviz.models.weights import load_weights_file, load_weights_into


def _timm() -> Any:
    return require("timm", "timm", "timm")


def check_arch(arch: str | None) -> str:
    """``arch`` if timm knows it (with or without a ``.tag``), else one line with the closest names."""
    timm = _timm()
    names = timm.list_models()
    if arch and arch.split(".", 1)[0] in names:
        return arch
    hint = ", ".join(closest(str(arch), names)) or "resnet18, vit_small_patch16_224, convnext_atto"
    raise UnknownModelError(f"timm has no architecture {arch!r} (model.arch); closest: {hint}")


def _pretrained(timm: Any, arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """``arch`` with its pretrained tag's weights from the local cache, or one line saying how to get them."""
    cfg = timm.models.get_pretrained_cfg(arch)
    tagged = f"{arch.split('.', 1)[0]}.{cfg.tag}" if cfg is not None and cfg.tag else arch
    if cfg is None or not cfg.hf_hub_id:
        raise WeightsError(
            f"timm has no Hugging Face weights for {arch!r}; pass model.weights=/path/to/file.safetensors (or model.weights=none)"
        )
    try:
        with hub_offline():
            return timm.create_model(arch, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # LocalEntryNotFoundError is an OSError
        raise WeightsError(
            f"pretrained weights for timm {tagged!r} are not in the Hugging Face cache ({hub_folder(cfg.hf_hub_id)}); on a machine "
            f"with internet run `python -c \"import timm; timm.create_model('{tagged}', pretrained=True)\"` and copy that folder "
            f"here, or pass model.weights=/path/to/model.safetensors (or model.weights=none for random init)"
        ) from exc


def build_timm(
    arch: str | None,
    weights: str | None = "imagenet",
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
) -> FeatureModel:
    """A frozen timm network; ``input_size`` resizes a ViT's or Swin's patch grid (``img_size``)."""
    timm = _timm()
    arch = check_arch(arch)
    cfg = timm.models.get_pretrained_cfg(arch)
    kwargs: dict[str, Any] = {}
    # A fixed-size model (position embeddings, windows) must be built at the side it runs at.
    if input_size and cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = int(input_size)
    if weights == "imagenet":
        net = _pretrained(timm, arch, kwargs)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # random init is reproducible and leaves the caller's stream alone
            net = timm.create_model(arch, pretrained=False, **kwargs)
        if weights is not None:
            load_weights_into(net, load_weights_file(weights), weights)
    data = net.pretrained_cfg
    size = int(input_size or data.get("input_size", (3, 224, 224))[-1])
    classes = int(getattr(net, "num_classes", 0) or 0) or None
    prefix = getattr(net, "num_prefix_tokens", None)
    model = FeatureModel(
        net,
        mean or data.get("mean") or IMAGENET_MEAN,
        std or data.get("std") or IMAGENET_STD,
        size,
        name=f"timm:{arch}",
        num_classes=classes,
        token_prefix=int(prefix) if prefix is not None else None,
    )
    return model.to(device)
