"""``model=open_clip``: a CLIP (or SigLIP) image tower as a :class:`FeatureModel`, its text tower on call.

The network is the image tower (``model.visual``): layer names are its module paths, and
its output embedding is also the layer ``embedding``, which :class:`~featviz.objectives.ClipText`
compares with a prompt's text embedding. The text tower is not kept: the model's
``text_encoder`` builds the whole CLIP again (same weights; a random init from the same
seed, so the towers still belong together), embeds the prompts under ``no_grad`` and lets
it go, so a render holds the image tower's memory only. ``weights``: an open_clip
pretrained tag (``openai``, ``laion2b_s34b_b79k``) read from the local Hugging Face cache
with the hub offline, ``none``, or a path to a CLIP state dict.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from featviz.errors import ConfigError, UnknownModelError, WeightsError, closest
from featviz.models.feature_model import FeatureModel
from featviz.models.hub import hub_folder, hub_offline, require
from featviz.models.weights import load_weights_file, load_weights_into

#: The layer that holds the image embedding (the image tower's output).
EMBEDDING = "embedding"


def _open_clip() -> Any:
    return require("open_clip", "clip", "open_clip")


def check_arch(arch: str | None) -> str:
    """``arch`` if open_clip knows it, else one line with the closest names."""
    names = _open_clip().list_models()
    if arch in names:
        return str(arch)
    hint = ", ".join(closest(str(arch), names)) or "ViT-B-32, ViT-B-16, RN50"
    raise UnknownModelError(f"open_clip has no architecture {arch!r} (model.arch); closest: {hint}")


def _tag_cfg(open_clip: Any, arch: str, tag: str) -> dict[str, Any]:
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise WeightsError(f"open_clip has no pretrained tag {tag!r} for {arch!r}; its tags: {tags} (or model.weights=none|/path/to/file)")
    return cfg


def _create_clip(arch: str, weights: str | None, input_size: int | None) -> nn.Module:
    """The whole CLIP with ``weights`` (a tag from the cache, none, or a file), in eval mode."""
    open_clip = _open_clip()
    size = {"force_image_size": int(input_size)} if input_size else {}
    if weights is None or _is_file_like(weights):
        with torch.random.fork_rng():
            torch.manual_seed(0)  # both towers of a random init come out the same on every build
            clip = open_clip.create_model(arch, pretrained=None, **size)
        if weights is not None:
            load_weights_into(clip, load_weights_file(weights), weights)
        return clip.eval()
    cfg = _tag_cfg(open_clip, arch, weights)
    where = hub_folder("/".join(cfg["hf_hub"].split("/")[:2])) if cfg.get("hf_hub") else None
    if where is None:
        raise WeightsError(
            f"open_clip's {arch}/{weights} weights are not on the Hugging Face hub, so featviz cannot read them offline; "
            f"pass model.weights=/path/to/file.pt (or model.weights=none)"
        )
    try:
        with hub_offline():
            clip = open_clip.create_model(arch, pretrained=weights, **size)
    except (OSError, RuntimeError, ValueError) as exc:  # LocalEntryNotFoundError is an OSError
        raise WeightsError(
            f"open_clip weights {arch}/{weights} are not in the Hugging Face cache ({where}); on a machine with internet run "
            f"`python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{weights}')\"` and copy that folder here, "
            f"or pass model.weights=/path/to/open_clip_model.safetensors (or model.weights=none)"
        ) from exc
    return clip.eval()


def _is_file_like(weights: str) -> bool:
    """A weights value that names a file rather than a pretrained tag."""
    return "/" in weights or "\\" in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _through_embedding(module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of the image tower: its output passes through the ``embedding`` layer."""
    return module.embedding(output)


@functools.lru_cache(maxsize=32)
def _prompt_embeddings(arch: str, weights: str | None, input_size: int | None, prompts: tuple[str, ...]) -> torch.Tensor:
    """``[P, D]`` unit text embeddings; the text tower exists only inside this call.

    Cached by prompt: the jobs of a pack or a sweep with the same prompts embed them once.
    """
    open_clip = _open_clip()
    clip = _create_clip(arch, weights, input_size)
    try:
        with hub_offline():
            tokenizer = open_clip.get_tokenizer(arch)
    except (OSError, RuntimeError, ValueError) as exc:
        raise WeightsError(f"the tokenizer of open_clip {arch!r} is not in the Hugging Face cache; {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        text = clip.encode_text(tokenizer(list(prompts)))
    del clip
    return F.normalize(text.float(), dim=-1)


def build_open_clip(
    arch: str | None,
    weights: str | None = "openai",
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
) -> FeatureModel:
    """A frozen open_clip image tower whose ``text_encoder`` embeds prompts (``input_size``: its side)."""
    arch = check_arch(arch)
    if weights == "imagenet":
        raise ConfigError("model=open_clip takes an open_clip pretrained tag (e.g. model.weights=openai), none or a file, not imagenet")
    clip = _create_clip(arch, weights, input_size)
    visual = clip.visual
    del clip  # the text tower goes now; text_encoder builds its own when asked
    visual.add_module(EMBEDDING, nn.Identity())
    visual.register_forward_hook(_through_embedding)
    side = visual.image_size
    size = int(side[0] if isinstance(side, (tuple, list)) else side)
    prefix = 1 if getattr(visual, "class_embedding", None) is not None else None
    model = FeatureModel(
        visual,
        mean or getattr(visual, "image_mean", None) or _open_clip().OPENAI_DATASET_MEAN,
        std or getattr(visual, "image_std", None) or _open_clip().OPENAI_DATASET_STD,
        size,
        name=f"open_clip:{arch}",
        token_prefix=prefix,
    )
    model.text_encoder = functools.partial(_encode, arch, weights, input_size)
    return model.to(device)


def _encode(arch: str, weights: str | None, input_size: int | None, prompts: Sequence[str]) -> torch.Tensor:
    return _prompt_embeddings(arch, weights, input_size, tuple(prompts))
