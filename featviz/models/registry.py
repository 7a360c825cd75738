"""Build a :class:`FeatureModel` from a name: the embedded model, torchvision, or any module.

``build_model("efficientnet_lite0")`` gives the embedded, offline default;
``build_model("googlenet", weights="imagenet")`` takes torchvision's weights from the local
torch hub cache (nothing is downloaded: a missing file is a clear error that says how to
provide it); ``weights`` may also be a path to a state dict, loaded with
``weights_only=True`` so no pickled code ever runs.

A torchvision model's input normalization and side come from its weights' own metadata
(``get_model_weights(name).DEFAULT.transforms()``: mean, std, crop size; readable without
the weights file), so inception_v3 gets 299 px, efficientnet_b3 300 px and swin_v2_t 256 px
without a table here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featviz.errors import ConfigError, UnknownModelError, WeightsError, closest
from featviz.models.feature_model import IMAGENET_MEAN, IMAGENET_STD, FeatureModel, stem_channels
from featviz.models.weights import load_state_dict_file, load_weights_into

_EMBEDDED: dict[str, Callable[[bool], nn.Module]] = {}


def register(name: str) -> Callable[[Callable[[bool], nn.Module]], Callable[[bool], nn.Module]]:
    """Register a builder ``fn(pretrained: bool) -> nn.Module`` for an embedded model."""

    def deco(fn: Callable[[bool], nn.Module]) -> Callable[[bool], nn.Module]:
        _EMBEDDED[name] = fn
        return fn

    return deco


@register("efficientnet_lite0")
def _efficientnet_lite0(pretrained: bool) -> nn.Module:
    from featviz.models.efficientnet_lite import efficientnet_lite

    return efficientnet_lite("lite0", pretrained=pretrained)


@register("efficientnet_lite1")
def _efficientnet_lite1(pretrained: bool) -> nn.Module:
    """The second real network (same family, deeper, 240 px): the default eval model."""
    from featviz.models.efficientnet_lite import efficientnet_lite

    return efficientnet_lite("lite1", pretrained=pretrained)


def torchvision_names() -> list[str]:
    """Names of torchvision's ImageNet classification models."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


#: Model names whose architecture is ``arch``, built by another library (featviz/models/timm_zoo.py, open_clip_zoo.py).
ZOOS = ("timm", "open_clip")


def available_models() -> list[str]:
    return [*_EMBEDDED, *torchvision_names(), *ZOOS]


def check_model_name(name: str, key: str = "model.name") -> None:
    """Raise :class:`UnknownModelError` (naming ``key`` and the closest names) unless ``name`` is a registry model."""
    if name in _EMBEDDED or name in ZOOS or name in torchvision_names():
        return
    zoo, _, arch = name.partition(":")
    if zoo == "timm" and arch:  # an evaluator named in one string: metrics.eval_model=timm:resnet50
        from featviz.models.timm_zoo import check_arch

        check_arch(arch)
        return
    hint = ", ".join(closest(name, available_models())) or "efficientnet_lite0, googlenet, resnet50"
    raise UnknownModelError(f"unknown model {name!r} ({key}); closest: {hint}")


def _torchvision_cached_weights(name: str) -> Any:
    """Return torchvision's DEFAULT weights enum for ``name`` if its file is in the hub cache."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    filename = weights.url.rsplit("/", 1)[-1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.is_file():
        raise WeightsError(
            f"ImageNet weights for {name!r} are not in the torch hub cache ({cached}); on a machine with "
            f"internet run `python -c \"import torchvision; torchvision.models.get_model('{name}', weights='DEFAULT')\"` "
            f"and copy {filename} there, or pass model.weights=/path/to/{filename} (or model.weights=none for random init)"
        )
    return weights


def torchvision_preprocessing(name: str) -> tuple[int, tuple[float, ...], tuple[float, ...]] | None:
    """``(crop side, mean, std)`` of torchvision's DEFAULT weights for ``name`` (None: no weights)."""
    import torchvision

    try:
        preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
    return int(preset.crop_size[0]), tuple(preset.mean), tuple(preset.std)


def _build_torchvision(name: str, weights: str | None) -> nn.Module:
    import torchvision

    # GoogLeNet / Inception-v3 weights were trained on inputs transformed inside the model.
    extra: dict[str, Any] = {}
    if name in ("googlenet", "inception_v3"):
        extra = {"aux_logits": False, "init_weights": False, "transform_input": weights not in (None, "none")}
    if name.startswith("vit_") and weights == "imagenet":
        # A ViT's position embedding fixes its side: build it at the side its weights were
        # trained at (vit_h_14's DEFAULT weights are 518 px).
        extra = {"image_size": torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"][0]}
    if weights == "imagenet":
        enum = _torchvision_cached_weights(name)
        net = torchvision.models.get_model(name, weights=None, **extra)
        state = torch.load(Path(torch.hub.get_dir()) / "checkpoints" / enum.url.rsplit("/", 1)[-1], map_location="cpu", weights_only=True)
        load_weights_into(net, state, f"torchvision:{name}", ignore_prefixes=("aux",) if extra else ())
        return net
    torch.manual_seed(0)  # random init is reproducible even outside render()'s generator
    net = torchvision.models.get_model(name, weights=None, **extra)
    if weights not in (None, "none"):
        load_weights_into(net, load_state_dict_file(weights), str(weights), ignore_prefixes=("aux",) if extra else ())
    return net


def build_model(
    name: str = "efficientnet_lite0",
    weights: str | None = "imagenet",
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    net: nn.Module | None = None,
    device: str | torch.device = "cpu",
    in_channels: int | None = None,
    arch: str | None = None,
) -> FeatureModel:
    """Build a frozen :class:`FeatureModel`.

    Args:
        name: ``efficientnet_lite0`` (embedded), any torchvision classification model name,
            or a label when ``net`` is given.
        weights: ``imagenet`` (pretrained), ``none`` (random init) or a state-dict path.
        input_size: the training resolution; None finds it (below), else 240 for
            efficientnet_lite1 and 224 for the rest.
        net: any ``nn.Module`` to wrap instead of looking ``name`` up (Hydra ``_target_``).
        mean, std: input normalization; None takes the torchvision weights' own, else
            ImageNet's for a 3-channel network and none (0 and 1) for any other.
        in_channels: the network's input channels; None reads them from its stem.
        arch: with ``name`` ``timm`` or ``open_clip``, that library's architecture name
            (``timm:ARCH`` in ``name`` says both, as ``metrics.eval_model`` does).

    A ViT's side is its ``image_size`` (the only one it takes); otherwise ``input_size``
    None takes the torchvision weights' crop size.
    """
    weights = None if weights in (None, "none", "None", "") else str(weights)
    if net is None and name.startswith("timm:"):
        name, arch = "timm", name.split(":", 1)[1]
    if net is None and name in ZOOS:
        from featviz.models.open_clip_zoo import build_open_clip
        from featviz.models.timm_zoo import build_timm

        build = build_timm if name == "timm" else build_open_clip
        return build(arch, weights, input_size, mean, std, device)
    if net is None:
        if name in _EMBEDDED:
            net = _EMBEDDED[name](weights == "imagenet")
            if weights not in (None, "imagenet"):
                load_weights_into(net, load_state_dict_file(weights), weights)
        elif name in torchvision_names():
            net = _build_torchvision(name, weights)
        else:
            check_model_name(name)
    elif weights not in (None, "imagenet"):
        load_weights_into(net, load_state_dict_file(weights), weights)
    # The embedded models need no torchvision metadata (importing torchvision costs ~2 s of start-up).
    preset = torchvision_preprocessing(name) if name not in _EMBEDDED and name in torchvision_names() else None
    fixed = getattr(net, "image_size", None)
    if input_size and isinstance(fixed, int) and input_size != fixed:
        raise ConfigError(f"model.input_size={input_size} but {name!r} takes {fixed} px only (its image_size); set model.input_size=null")
    size = input_size or fixed or (preset[0] if preset else None)
    size = size or {"inception_v3": 299, "efficientnet_lite1": 240}.get(name, 224)
    channels = int(in_channels or stem_channels(net) or 3)
    default_mean, default_std = (preset[1], preset[2]) if preset else (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.0,), (1.0,))
    fc = [m for m in net.modules() if isinstance(m, nn.Linear)]
    num_classes = fc[-1].out_features if fc else None
    model = FeatureModel(net, mean or default_mean, std or default_std, int(size), name=name, num_classes=num_classes, in_channels=channels)
    return model.to(device)
