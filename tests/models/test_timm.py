"""model=timm on random-init networks: renders rise, layouts (NCHW, Swin's NHWC stages, tokens with
class and register prefix) are read right, weights load from files, and the speed-ups apply.

Inputs are small (48-64 px; the ViTs and Swin are built at that side through timm's ``img_size``).
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

pytest.importorskip("timm")

from featviz.app.build import build_run
from featviz.errors import ConfigError, UnknownModelError, WeightsError
from featviz.models import FeatureModel, build_model
from featviz.models.layout import Layout
from featviz.objectives import Channel, Neuron, Token
from featviz.render import render

SIZES = {"resnet18": None, "convnext_atto": None, "swin_tiny_patch4_window7_224": 64, "vit_small_patch16_224": 64, "vit_small_patch14_reg4_dinov2": 56}


@pytest.fixture(scope="module")
def nets() -> dict[str, FeatureModel]:
    return {arch: build_model("timm", weights="none", arch=arch, input_size=size) for arch, size in SIZES.items()}


@pytest.mark.parametrize(
    ("arch", "objective"),
    [
        ("resnet18", {"kind": "channel", "layer": "layer2", "unit": 3}),
        ("convnext_atto", {"kind": "channel", "layer": "stages.1", "unit": 5}),
        ("swin_tiny_patch4_window7_224", {"kind": "channel", "layer": "layers.1", "unit": 5}),  # an NHWC stage
        ("vit_small_patch16_224", {"kind": "neuron", "layer": "blocks.5.mlp.fc1", "unit": 7, "x": 1, "y": 2}),
        ("vit_small_patch16_224", {"kind": "token", "layer": "blocks.5", "token": 0, "unit": 3}),
        ("vit_small_patch14_reg4_dinov2", {"kind": "token", "layer": "blocks.3", "token": 0}),
        ("vit_small_patch14_reg4_dinov2", {"kind": "neuron", "layer": "blocks.3.mlp.fc1", "unit": 2, "x": 0, "y": 3}),
    ],
    ids=["resnet18-channel", "convnext-channel", "swin-nhwc-channel", "vit-patch-neuron", "vit-class-token", "dinov2-class-token", "dinov2-patch"],
)
def test_each_run_raises_its_objective(nets: dict[str, FeatureModel], arch: str, objective: dict) -> None:
    model = nets[arch]
    cfg = {"model": {"name": "timm", "arch": arch}, "objective": objective, "param": {"kind": "fft", "size": 48},
           "steps": 4, "device": "cpu", "metrics": {"enabled": False}, "optimizer": {"lr": 0.1}}
    parts = build_run(cfg, model=model)
    result = render(parts.model, parts.objective, parts.param, parts.transforms, parts.regularizers, parts.optimizer,
                    steps=4, generator=parts.generator, device="cpu", callbacks=parts.callbacks)
    assert result.history[-1]["objective"] > result.history[0]["objective"], result.history


def test_input_size_and_normalization_come_from_the_pretrained_cfg(nets: dict[str, FeatureModel]) -> None:
    assert build_model("timm", weights="none", arch="convnext_atto").input_size == 224
    assert nets["vit_small_patch16_224"].input_size == 64  # built at that side (img_size)
    assert torch.allclose(nets["resnet18"].mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert nets["resnet18"].num_classes == 1000 and nets["vit_small_patch14_reg4_dinov2"].num_classes is None


def test_token_layers_have_the_class_and_register_prefix(nets: dict[str, FeatureModel]) -> None:
    vit, dino = nets["vit_small_patch16_224"], nets["vit_small_patch14_reg4_dinov2"]
    shapes = vit.layer_shapes(64, ["blocks.0", "patch_embed", "head"])
    assert shapes["blocks.0"] == (384, 4, 4) and shapes.layouts["blocks.0"] == Layout("tokens", 1)
    assert shapes.layouts["patch_embed"] == Layout("tokens", 0)  # before the class token is added
    assert shapes.layouts["head"] == Layout("vector")
    # 5 prefix tokens (class + 4 registers) before a 4x4 grid: 21 tokens, which the shape alone cannot tell.
    shapes = dino.layer_shapes(56, ["blocks.0"])
    assert shapes["blocks.0"] == (384, 4, 4) and shapes.layouts["blocks.0"] == Layout("tokens", 5)


def test_a_patch_neuron_and_the_class_token_read_the_right_tokens(nets: dict[str, FeatureModel]) -> None:
    dino = nets["vit_small_patch14_reg4_dinov2"]
    acts = dino(torch.rand(2, 3, 56, 56), ["blocks.2"])
    raw = acts["blocks.2"]  # [B, 5 + 16, 384]
    assert torch.equal(Neuron("blocks.2", 9, x=3, y=1)(acts), raw[:, 5 + 1 * 4 + 3, 9])
    assert torch.equal(Token("blocks.2", 0, 9)(acts), raw[:, 0, 9])


def test_a_channel_objective_on_an_nhwc_stage_reads_the_channel_axis(nets: dict[str, FeatureModel]) -> None:
    swin = nets["swin_tiny_patch4_window7_224"]
    layer = "layers.1"  # a Swin stage: [B, H, W, C]
    acts = swin(torch.rand(1, 3, 64, 64), [layer])
    raw = acts[layer]
    assert raw.shape == (1, 8, 8, 192) and acts.layouts[layer] == Layout("nhwc")
    assert torch.allclose(Channel(layer, 7)(acts), raw[..., 7].mean(dim=(1, 2)))
    assert swin.layer_shapes(64, [layer])[layer] == (192, 8, 8)
    convnext = nets["convnext_atto"]  # its blocks use 1x1 convolutions (conv_mlp): NCHW throughout
    assert convnext.layer_shapes(64, ["stages.0.blocks.0.mlp.fc1"]).layouts["stages.0.blocks.0.mlp.fc1"] == Layout("nchw")


def test_speedups_fold_batchnorms_stop_early_and_keep_weights_frozen(nets: dict[str, FeatureModel]) -> None:
    plain = build_model("timm", weights="none", arch="resnet18")
    fast = build_model("timm", weights="none", arch="resnet18")
    x = torch.rand(1, 3, 64, 64)
    fast.optimize(keep=["layer3"])
    assert fast.folded and fast.channels_last
    with torch.no_grad():
        assert torch.allclose(fast(x, ["layer3"])["layer3"], plain(x, ["layer3"])["layer3"], atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in fast.parameters())
    ran = []
    handle = plain.net.layer4.register_forward_hook(lambda *_: ran.append(1))
    plain(x, ["layer1"])
    handle.remove()
    assert not ran  # the pass stopped after layer1


def test_weights_from_a_file_load_with_weights_only(tmp_path) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() + 0.01 for k, v in build_model("timm", weights="none", arch="resnet18").net.state_dict().items()}
    torch.save(state, tmp_path / "r18.pth")
    save_file(state, str(tmp_path / "r18.safetensors"))
    for name in ("r18.pth", "r18.safetensors"):
        model = build_model("timm", weights=str(tmp_path / name), arch="resnet18")
        assert torch.equal(model.net.conv1.weight, state["conv1.weight"])
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="do not fit"):
        build_model("timm", weights=str(tmp_path / "bad.pth"), arch="resnet18")


def test_pretrained_weights_missing_offline_is_one_line_naming_the_cache_and_a_file(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    before = (constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))
    with pytest.raises(WeightsError) as err:
        build_model("timm", weights="imagenet", arch="resnet18")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and "model.weights=/path/" in message
    assert (constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")) == before  # offline for the call only


def test_an_unknown_architecture_and_a_missing_package_are_one_line(monkeypatch) -> None:
    with pytest.raises(UnknownModelError, match="resnet18"):
        build_model("timm", weights="none", arch="resnet1B")
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"featviz\[timm\]"):
        build_model("timm", weights="none", arch="resnet18")


def test_a_timm_evaluator_for_transfer_metrics() -> None:
    from featviz.app.build import build_metrics_callback

    callback = build_metrics_callback({"eval_model": "timm:resnet18", "eval_weights": "none"})
    evaluator = callback.eval_model  # built when first read
    assert evaluator.name == "timm:resnet18" and evaluator.num_classes == 1000
    with pytest.raises(UnknownModelError, match="resnet18"):
        build_metrics_callback({"eval_model": "timm:resnet1B"})
