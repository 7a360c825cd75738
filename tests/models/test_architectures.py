"""Every layout an architecture gives: ViT tokens, channels-last Swin/ConvNeXt maps, NCHW CNNs.

torchvision models are random-init (no weights can be downloaded here); ViT-B/16 runs at its
one size, 224 px, but only up to its first encoder block, Swin and ConvNeXt at 64 px.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Permute

from featviz.app.commands.layers import layer_table
from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.models import FeatureModel, build_model
from featviz.models.layout import Layout, LayerMap, infer, token_prefix
from featviz.models.registry import torchvision_preprocessing
from featviz.objectives import Channel, DeepDream, Direction, GramDiversity, Neuron, Token

VIT_LAYER0 = "encoder.layers.encoder_layer_0"


@pytest.fixture(scope="module")
def vit_b_16() -> FeatureModel:
    return build_model("vit_b_16", weights="none")


@pytest.fixture(scope="module")
def swin_t() -> FeatureModel:
    return build_model("swin_t", weights="none", input_size=64)


@pytest.fixture(scope="module")
def tiny_vit() -> FeatureModel:
    """A 32 px ViT with 8 px patches: 1 class token + a 4x4 grid of 16-dim tokens."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10)
    return build_model("tiny_vit", weights="none", net=net)


def grad_at(model: FeatureModel, layer: str, objective, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d objective / d layer output, d objective / d images)`` for one forward pass."""
    kept: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: object, out: object) -> None:
        out = out[0] if isinstance(out, tuple) else out
        out.retain_grad()
        kept["act"] = out

    handle = model.net.get_submodule(layer).register_forward_hook(keep)
    try:
        images = images.clone().requires_grad_(True)
        objective(model(images, objective.layers)).sum().backward()
    finally:
        handle.remove()
    return kept["act"].grad, images.grad


def test_layers_lists_channels_first_with_the_layout(vit_b_16) -> None:
    vit = {name: (shape, layout) for name, _, shape, layout in layer_table(["model=vit_b_16", "model.weights=none"])}
    assert vit["conv_proj"] == ("768x14x14", "nchw")
    assert vit["encoder.layers.encoder_layer_11.mlp.1"] == ("3072x14x14", "tokens 1+14x14")
    assert vit[f"{VIT_LAYER0}.self_attention"] == ("768x14x14", "tokens 1+14x14")
    assert vit["heads"] == ("1000", "vector")
    swin = {name: (shape, layout) for name, _, shape, layout in layer_table(["model=swin_t", "model.weights=none"])}
    assert swin["features.0"] == ("96x56x56", "nhwc")  # the 56x56x96 stage
    assert swin["features.1.0.mlp.1"] == ("384x56x56", "nhwc")
    assert swin["features.7"] == ("768x7x7", "nhwc") and swin["permute"] == ("768x7x7", "nchw")
    convnext = {name: (shape, layout) for name, _, shape, layout in layer_table(["model=convnext_tiny", "model.weights=none", "+size=64"])}
    assert convnext["features.1.0.block.3"] == ("384x16x16", "nhwc")  # Linear inside the block
    assert convnext["features.1"] == ("96x16x16", "nchw") and convnext["features.7"] == ("768x2x2", "nchw")


def test_vit_neuron_reaches_only_its_patch(vit_b_16) -> None:
    """A neuron at patch (x=3, y=9) before any attention depends on that 16x16 patch alone,
    and at every layer only its own token gets a gradient (the class token is not a patch)."""
    images = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    act_grad, image_grad = grad_at(vit_b_16, f"{VIT_LAYER0}.ln_1", Neuron(f"{VIT_LAYER0}.ln_1", 5, x=3, y=9), images)
    token = 1 + 9 * 14 + 3
    assert act_grad[0, token, 5] != 0 and act_grad.count_nonzero() == 1
    patch = torch.zeros_like(image_grad, dtype=torch.bool)
    patch[..., 9 * 16 : 10 * 16, 3 * 16 : 4 * 16] = True
    assert image_grad[patch].abs().sum() > 0 and image_grad[~patch].abs().sum() == 0
    act_grad, _ = grad_at(vit_b_16, f"{VIT_LAYER0}.mlp.1", Neuron(f"{VIT_LAYER0}.mlp.1", 700, x=13, y=0), images)
    others = torch.ones(act_grad.shape[1], dtype=torch.bool)
    others[1 + 13] = False
    assert act_grad[0, 1 + 13].abs().sum() > 0 and act_grad[0, others].abs().sum() == 0


def test_swin_channel_gradient_stays_in_its_channel(swin_t) -> None:
    """Channel 90 of a channels-last stage is its last axis, not a row of the image."""
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    acts = swin_t(images, ["features.1"])
    assert acts.layouts["features.1"] == Layout("nhwc")
    assert torch.allclose(Channel("features.1", 90)(acts), acts["features.1"][..., 90].mean((1, 2)))
    act_grad, _ = grad_at(swin_t, "features.1", Channel("features.1", 90), images)
    assert act_grad[..., 90].abs().min() > 0 and act_grad[..., [c for c in range(96) if c != 90]].abs().sum() == 0
    with pytest.raises(UnitOutOfRangeError, match=r"96 channels; use 0\.\.95"):
        Channel("features.1", 96).validate(swin_t.layer_shapes(64, ["features.1"]), 1)


def test_every_objective_reads_tokens_and_channels_last_alike() -> None:
    """Channel, neuron, layer, direction and diversity give the same score on a map stored
    NCHW, NHWC or as 1 + 4x4 tokens."""
    g = torch.Generator().manual_seed(0)
    nchw = torch.randn(3, 8, 4, 4, generator=g)
    cls = torch.randn(3, 1, 8, generator=g)
    stored = {
        "nchw": LayerMap({"l": nchw}, {"l": Layout("nchw")}),
        "nhwc": LayerMap({"l": nchw.permute(0, 2, 3, 1)}, {"l": Layout("nhwc")}),
        "tokens": LayerMap({"l": torch.cat([cls, nchw.flatten(2).transpose(1, 2)], 1)}, {"l": Layout("tokens", 1)}),
    }
    objectives = [Channel("l", 3), Neuron("l", 2, x=1, y=3), DeepDream("l"), Direction("l", {3: 1.0, 5: -0.5}, cossim_pow=1.0), GramDiversity("l")]
    for objective in objectives:
        reference = objective(stored["nchw"])
        for kind in ("nhwc", "tokens"):
            assert torch.allclose(objective(stored[kind]), reference, atol=1e-6), (objective.name, kind)
    assert torch.equal(Token("l", 0, 4)(stored["tokens"]), cls[:, 0, 4])
    assert torch.equal(Token("l", 1 + 3 * 4 + 1, 2)(stored["tokens"]), nchw[:, 2, 3, 1])


def test_token_objective_and_the_ranges(tiny_vit) -> None:
    layer = f"{VIT_LAYER0}.mlp.1"
    shapes = tiny_vit.layer_shapes(32, [layer, "conv_proj"])
    assert shapes[layer] == (32, 4, 4) and shapes.layouts[layer] == Layout("tokens", 1)
    Token(layer, 16, 31).validate(shapes, 1)
    with pytest.raises(UnitOutOfRangeError, match=r"17 tokens; use 0\.\.16"):
        Token(layer, 17).validate(shapes, 1)
    with pytest.raises(UnitOutOfRangeError, match=r"0\.\.31"):
        Token(layer, 0, 32).validate(shapes, 1)
    with pytest.raises(UnitOutOfRangeError, match=r"0\.\.31"):
        Neuron(layer, 32).validate(shapes, 1)
    with pytest.raises(UnitOutOfRangeError, match=r"x=4 is outside .* use 0\.\.3"):
        Neuron(layer, 0, x=4).validate(shapes, 1)
    with pytest.raises(ConfigError, match="objective.layer='conv_proj' is nchw"):
        Token("conv_proj").validate(shapes, 1)
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    act_grad, _ = grad_at(tiny_vit, layer, Token(layer, 0), images)
    assert act_grad[0, 0].abs().sum() > 0 and act_grad[0, 1:].abs().sum() == 0


def test_layout_inference() -> None:
    assert infer((96, 56, 56), (224, 224)) == Layout("nchw")
    assert infer((56, 56, 96), (224, 224)) == Layout("nhwc")
    assert infer((197, 768), (224, 224)) == Layout("tokens", 1)
    assert infer((1000,), (224, 224)) == Layout("vector")
    assert infer((8, 8, 8), (8, 8)) is None and infer((96, 28, 56), (224, 448)) is None
    assert [token_prefix(n) for n in (197, 196, 50, 17, 2 + 49, 7)] == [1, 0, 1, 1, 2, 0]
    # Channels = height = width: told apart by a second, larger probe.
    conv = nn.Conv2d(1, 8, 3, padding=1)
    model = FeatureModel(nn.Sequential(conv, Permute([0, 2, 3, 1])), mean=(0.0,), std=(1.0,), input_size=8)
    acts = model(torch.rand(1, 1, 8, 8), ["0", "1"])
    assert acts.layouts == {"0": Layout("nchw"), "1": Layout("nhwc")}


def test_size_and_normalization_from_the_weights_metadata(vit_b_16) -> None:
    assert torchvision_preprocessing("swin_v2_t")[0] == 256 and torchvision_preprocessing("efficientnet_b3")[0] == 300
    assert torchvision_preprocessing("inception_v3") == (299, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert build_model("googlenet", weights="none").input_size == 224 and vit_b_16.input_size == 224
    with pytest.raises(ConfigError, match="takes 224 px only"):
        build_model("vit_b_16", weights="none", input_size=64)
    gray = build_model("gray", net=nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()))
    assert gray.in_channels == 1 and gray.mean.flatten().tolist() == [0.0] and gray.std.flatten().tolist() == [1.0]
    with pytest.raises(ConfigError, match="model.mean has 3 values but the network takes 1"):
        build_model("gray", net=nn.Conv2d(1, 4, 3), mean=(0.5, 0.5, 0.5))


TINY_VIT_NET = {
    "_target_": "torchvision.models.VisionTransformer",
    "image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32, "num_classes": 10,
}


def tiny_vit_render(objective: dict) -> torch.Tensor:
    """A few steps of a batch-of-two render of a ViT built from its config (``model.net._target_``)."""
    from featviz.app.build import build_run
    from featviz.render import render

    cfg = {
        "model": {"name": "tiny_vit", "weights": "none", "net": TINY_VIT_NET},
        "objective": objective, "param": {"kind": "fft", "size": 32}, "transforms": {"jitter": 2},
        "regularizer": {"diversity": 1.0, "diversity_layer": f"{VIT_LAYER0}.mlp.1"},
        "batch": 2, "steps": 3, "device": "cpu",
    }
    torch.manual_seed(0)  # the config's network is drawn from torch's global generator
    parts = build_run(cfg)
    assert parts.model.input_size == 32  # the ViT's own image_size
    result = render(
        parts.model, parts.objective, parts.param, parts.transforms, parts.regularizers, parts.optimizer,
        steps=3, generator=parts.generator, device="cpu", callbacks=parts.callbacks,
    )
    assert result.final["diversity"] >= 0 and result.history[-1]["objective"] > result.history[0]["objective"]
    return result.images


@pytest.mark.parametrize(
    "objective",
    [
        {"kind": "token", "layer": f"{VIT_LAYER0}.mlp.1", "token": 0, "unit": 3},
        {"kind": "neuron", "layer": f"{VIT_LAYER0}.mlp.1", "unit": 3, "x": 1, "y": 2},
        {"kind": "direction", "layer": "encoder", "units": [1, [4, 0.5]]},
    ],
    ids=["token", "neuron", "direction"],
)
def test_a_vit_renders_from_its_config_reproducibly(objective: dict) -> None:
    assert torch.equal(tiny_vit_render(objective), tiny_vit_render(objective))


def test_a_multispectral_network_gets_its_channel_count() -> None:
    """Five input bands: the stem says so, the param draws five (no RGB decorrelation) and the
    picture shows the first three."""
    from featviz.images import to_uint8
    from featviz.params import FFTImage

    model = build_model("bands", net=nn.Sequential(nn.Conv2d(5, 4, 3), nn.ReLU()), mean=(0.5,), std=(0.25,))
    assert model.in_channels == 5 and model.mean.shape == (1, 5, 1, 1)
    param = FFTImage(16, batch=2, decorrelate=True, channels=5, generator=torch.Generator().manual_seed(0))
    images = param()
    assert images.shape == (2, 5, 16, 16) and not param.decorrelate
    assert model(images, ["1"])["1"].shape == (2, 4, 14, 14)
    assert to_uint8(images[0]).shape == (16, 16, 3) and to_uint8(images[0, :1]).shape == (16, 16)
