"""Tests for featviz.models.efficientnet_lite (CPU, a few seconds)."""

from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featviz.models.efficientnet_lite import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    EfficientNetLite,
    blocks_from_state_dict,
    efficientnet_lite,
    lite_blocks,
    load_pretrained,
    pretrained_weights_path,
    remap_lukemelas_state_dict,
)

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def model() -> EfficientNetLite:
    return efficientnet_lite("lite0", pretrained=True)


def _preprocess(img: np.ndarray) -> torch.Tensor:
    """Shortest side -> 256 (bilinear), centre crop 224, [0, 1], ImageNet-normalize."""
    x = torch.from_numpy(img).permute(2, 0, 1).float().div(255.0)[None]
    h, w = x.shape[-2:]
    s = 256.0 / min(h, w)
    x = F.interpolate(
        x, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False, antialias=True
    ).clamp(0.0, 1.0)
    h, w = x.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    x = x[..., top : top + 224, left : left + 224]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def test_weights_load_strictly() -> None:
    raw: Dict[str, torch.Tensor] = torch.load(
        pretrained_weights_path(), map_location="cpu", weights_only=True
    )
    model = load_pretrained(EfficientNetLite())  # load_state_dict(strict=True) inside
    ours = model.state_dict()
    remapped = remap_lukemelas_state_dict(raw)
    expected = {k for k in ours if not k.endswith("num_batches_tracked")}
    assert set(remapped) == expected
    for key, value in remapped.items():
        assert torch.equal(ours[key], value), key


def test_block_layout_matches_weights(model: EfficientNetLite) -> None:
    specs = lite_blocks(VARIANTS["lite0"].repeats)
    assert len(specs) == 16 == len(model.blocks)
    for i, spec in enumerate(specs):
        block = model.blocks[i]
        mid = spec["in_channels"] * spec["expand_ratio"]
        dw = block.depthwise_conv.weight
        assert tuple(dw.shape) == (mid, 1, spec["kernel"], spec["kernel"])
        assert block.depthwise_conv.stride == (spec["stride"], spec["stride"])
        assert tuple(block.project_conv.weight.shape[:2]) == (spec["out_channels"], mid)
        if spec["expand_ratio"] == 1:
            assert block.expand_conv is None
        else:
            assert tuple(block.expand_conv.weight.shape[:2]) == (mid, spec["in_channels"])
        assert block.has_skip == (
            spec["stride"] == 1 and spec["in_channels"] == spec["out_channels"]
        )


@torch.no_grad()
def test_imagenet_top1(model: EfficientNetLite) -> None:
    x = torch.cat([_preprocess(skimage_data.chelsea()), _preprocess(skimage_data.coffee())])
    top1 = model(x).argmax(dim=1).tolist()
    assert 281 <= top1[0] <= 285, top1  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top1[1] in (967, 968), top1  # espresso / cup


@torch.no_grad()
def test_output_shape_small_input(model: EfficientNetLite) -> None:
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_odd_input_size_same_padding(model: EfficientNetLite) -> None:
    # TF 'SAME': every stride-2 layer gives ceil(size / 2).
    feats = {}
    handle = model.conv_head.register_forward_hook(lambda m, i, o: feats.setdefault("head", o))
    try:
        model(torch.randn(1, 3, 97, 130))
    finally:
        handle.remove()
    assert feats["head"].shape == (1, 1280, 4, 5)


def test_named_submodules_exist(model: EfficientNetLite) -> None:
    names = dict(model.named_modules())
    top = ["conv_stem", "bn0", "stem_act", "conv_head", "bn1", "head_act", "avgpool", "dropout", "fc"]
    for name in top:
        assert name in names, name
    for act in ("stem_act", "head_act"):
        assert isinstance(names[act], nn.ReLU6)
    for i in range(16):
        parts = ["depthwise_conv", "bn1", "depthwise_act", "project_conv", "bn2"]
        if i > 0:
            parts += ["expand_conv", "bn0", "expand_act"]
        else:
            for absent in ("expand_conv", "bn0", "expand_act"):
                assert f"blocks.0.{absent}" not in names
        assert f"blocks.{i}" in names
        for part in parts:
            assert f"blocks.{i}.{part}" in names, f"blocks.{i}.{part}"
        assert isinstance(names[f"blocks.{i}.depthwise_act"], nn.ReLU6)
    assert "blocks.16" not in names


def test_forward_stops_early_with_raising_hook(model: EfficientNetLite) -> None:
    class Stop(Exception):
        pass

    calls = []
    hooks = [
        model.blocks[3].register_forward_hook(lambda m, i, o: (_ for _ in ()).throw(Stop())),
        model.blocks[4].register_forward_hook(lambda m, i, o: calls.append(4)),
    ]
    try:
        with pytest.raises(Stop):
            model(torch.randn(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    assert calls == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_checkpoint_layout_is_the_repeats_table(variant: str) -> None:
    """Both packages' checkpoints hold exactly the layout the stage plan predicts."""
    raw = torch.load(pretrained_weights_path(variant), map_location="cpu", weights_only=True)
    assert blocks_from_state_dict(raw) == lite_blocks(VARIANTS[variant].repeats)


def test_foreign_checkpoint_refused() -> None:
    raw = torch.load(pretrained_weights_path("lite0"), map_location="cpu", weights_only=True)
    raw["_blocks.1._project_conv.weight"] = torch.zeros(17, 96, 1, 1)
    with pytest.raises(ValueError, match="stage plan"):
        blocks_from_state_dict(raw)


@torch.no_grad()
def test_lite1_is_a_second_real_network() -> None:
    """Lite1 (21 blocks, its own weights) classifies the same photos, and differs from Lite0."""
    lite1 = efficientnet_lite("lite1", pretrained=True)
    assert len(lite1.blocks) == 21
    x = torch.cat([_preprocess(skimage_data.chelsea()), _preprocess(skimage_data.coffee())])
    top1 = lite1(x).argmax(dim=1).tolist()
    assert 281 <= top1[0] <= 285, top1
    assert top1[1] in (967, 968), top1
    random_init = efficientnet_lite("lite1", pretrained=False)
    assert [len(b) for b in (random_init.blocks, lite1.blocks)] == [21, 21]
