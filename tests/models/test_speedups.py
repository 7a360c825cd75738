"""The speed-ups compute what the plain path computes (featviz.models.speedups, FeatureModel.optimize,
fused transforms, Conv2dSame fast paths) and the contact-sheet mode renders and writes units."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import rel_error

from featviz.app.build import perf_from_config
from featviz.tools.contact_sheet import UnitsObjective, contact_sheet
from featviz.app.commands.units import run_units
from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.models import build_model
from featviz.models.efficientnet_lite import Conv2dSame
from featviz.objectives.units import Channel
from featviz.objectives.base import Sum
from featviz.params.fourier import FFTImage
from featviz.models.speedups.options import PerfOptions
from featviz.render import render
from featviz.transforms import build_transforms

LAYERS = ["blocks.2", "blocks.8.expand_act", "blocks.10", "logits"]


@pytest.fixture(scope="module")
def fast(plain_lite0):
    # A copy: optimize() changes the network in place, and plain_lite0 must stay plain.
    return copy.deepcopy(plain_lite0).optimize(keep=["blocks.3.depthwise_conv"])


def test_folded_model_gives_the_same_activations(plain_lite0, fast, device):
    assert len(fast.folded) == 48  # 49 conv -> BN pairs, one kept for blocks.3.depthwise_conv
    assert fast.channels_last and fast.layer_names == plain_lite0.layer_names
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        want, got = plain_lite0.to(device)(x, LAYERS), fast.to(device)(x, LAYERS)
    for layer in LAYERS:
        assert rel_error(got[layer], want[layer]) < 1e-5, layer


def test_folded_model_gives_the_same_input_gradient(plain_lite0, fast, device):
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2)).to(device)
    grads = []
    for model in (plain_lite0.to(device), fast.to(device)):
        xi = x.clone().requires_grad_(True)
        Channel("blocks.8", 5)(model(xi, ["blocks.8"])).sum().backward()
        grads.append(xi.grad)
    assert rel_error(grads[1], grads[0]) < 1e-4
    assert all(p.grad is None and not p.requires_grad for p in fast.parameters())


def test_a_kept_convolution_gives_its_own_output(plain_lite0, fast):
    assert "blocks.3.depthwise_conv" not in fast.folded
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kept = fast(x, ["blocks.3.depthwise_conv"])["blocks.3.depthwise_conv"]
        assert rel_error(kept, plain_lite0(x, ["blocks.3.depthwise_conv"])["blocks.3.depthwise_conv"]) < 1e-5


def test_a_shared_model_unfolds_a_convolution_asked_for_later(plain_lite0):
    model = copy.deepcopy(plain_lite0).optimize()
    assert {"conv_head", "conv_stem"} <= model.folded.keys()
    model.optimize(keep=["conv_head"])  # a later run's objective on the conv itself gets it back
    assert "conv_head" not in model.folded
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_error(model(x, ["conv_head"])["conv_head"], plain_lite0(x, ["conv_head"])["conv_head"]) < 1e-5
        # Asked for directly (a metric, a diagnostic on a shared model): unfolded on the spot.
        assert rel_error(model(x, ["conv_stem"])["conv_stem"], plain_lite0(x, ["conv_stem"])["conv_stem"]) < 1e-5
    assert "conv_stem" not in model.folded


def test_folding_finds_pairs_in_torchvision_models():
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    ref = build_model("resnet18", weights="none", input_size=64)  # 64 px: a cheap folding probe
    opt = copy.deepcopy(ref).optimize()
    assert len(opt.folded) == 20  # conv1/bn1, two per basic block, and the four downsample pairs
    with torch.no_grad():
        assert rel_error(opt(x)["logits"], ref(x)["logits"]) < 1e-5


def test_bf16_autocast_returns_float32_close_to_float32(plain_lite0, device):
    model = copy.deepcopy(plain_lite0).optimize(PerfOptions(fold_bn=False, channels_last=False, amp="bf16")).to(device)
    x = torch.rand(1, 3, 64, 64).to(device)
    with torch.no_grad():
        got, want = model(x, ["blocks.4"])["blocks.4"], plain_lite0.to(device)(x, ["blocks.4"])["blocks.4"]
    assert got.dtype == torch.float32
    assert 0 < rel_error(got, want) < 0.1


def test_perf_options_are_validated():
    with pytest.raises(ConfigError, match="perf.amp"):
        PerfOptions(amp="fp8")
    with pytest.raises(ConfigError, match="fold_bn, channels_last"):
        perf_from_config({"fold_batchnorm": True})
    assert perf_from_config(None) == PerfOptions()


@pytest.mark.parametrize(
    ("kernel", "stride", "groups", "size"),
    [(3, 1, 8, (15, 15)), (5, 1, 8, (16, 16)), (1, 1, 1, (14, 14)), (3, 2, 8, (16, 16)), (5, 2, 8, (17, 17)),
     (5, 2, 8, (16, 16)), (3, 2, 1, (16, 15)), (5, 2, 8, (17, 14))],
)
def test_conv2d_same_fast_paths_equal_explicit_tf_padding(kernel, stride, groups, size):
    """Built-in, symmetric and lopsided (zero-tap) 'SAME' paths: values and input gradients."""
    torch.manual_seed(0)
    conv = Conv2dSame(8, 16, kernel, stride=stride, groups=groups, bias=True)
    x = torch.randn(2, 8, *size)
    pads = []
    for n in reversed(size):  # F.pad order: width first
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    grad_out = torch.randn_like(F.conv2d(F.pad(x, pads), conv.weight, stride=stride, groups=groups))
    for memory_format in (torch.contiguous_format, torch.channels_last):
        conv = conv.to(memory_format=memory_format)
        xa = x.clone(memory_format=memory_format).requires_grad_()
        xb = x.clone().requires_grad_()
        got = conv(xa)
        want = F.conv2d(F.pad(xb, pads), conv.weight, conv.bias, stride=stride, groups=groups)
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-5)
        got.backward(grad_out)
        want.backward(grad_out)
        assert torch.allclose(xa.grad, xb.grad, atol=1e-5)


def _smooth(batch: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([torch.sin(2 * math.pi * (1.5 * xx + 0.5 * yy)), torch.cos(4 * math.pi * yy), torch.sin(2 * math.pi * (xx - yy))])
    return (0.5 + 0.3 * img)[None].repeat(batch, 1, 1, 1)


def test_fused_geometry_crops_and_resizes_like_the_chain():
    kw = {"pad": 6, "pad_mode": "constant", "jitter": 4, "jitter_after": 2, "resize": 112}
    chain, fused = build_transforms(**kw), build_transforms(**kw, fuse_geometry=True)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = chain(_smooth(2), g1), fused(_smooth(2), g2)
    assert a.shape == b.shape == (2, 3, 112, 112)
    assert (a - b).abs().max() < 1e-5
    assert torch.equal(g1.get_state(), g2.get_state())  # the same random draws


def test_fused_geometry_matches_the_chain_away_from_the_borders():
    kw = {"jitter": 4, "scale": (0.9, 1.1), "rotate": 10, "jitter_after": 2, "resize": 112}
    for seed in range(3):
        a = build_transforms(**kw)(_smooth(3), torch.Generator().manual_seed(seed))
        b = build_transforms(**kw, fuse_geometry=True)(_smooth(3), torch.Generator().manual_seed(seed))
        # One bilinear resample instead of two; borders differ in how they are padded.
        assert (a - b)[..., 24:-24, 24:-24].abs().max() < 5e-3
        assert (a - b).abs().mean() < 5e-3


def test_optimized_render_equals_plain_render(plain_lite0, fast, device):
    def run(model, fuse):
        g = torch.Generator().manual_seed(0)
        tf = build_transforms(pad=4, pad_mode="constant", jitter=4, scale=(0.95, 1.05), rotate=5, jitter_after=2, resize=64, fuse_geometry=fuse)
        return render(model, Channel("blocks.4", 7), param=FFTImage(48, generator=g), transforms=tf, steps=6, log_every=6, device=device, generator=g)

    base, opt, both = run(plain_lite0, False), run(fast, False), run(fast, True)
    # Adam divides by the gradient's running RMS, so float-rounding differences in tiny
    # gradient entries move single pixels by up to lr; on average the images agree closely.
    assert (opt.images - base.images).abs().mean() < 1e-3
    assert opt.final["objective"] == pytest.approx(base.final["objective"], rel=1e-2)
    assert (both.images - base.images).abs().mean() < 2e-2
    assert both.final["objective"] == pytest.approx(base.final["objective"], rel=0.1)


def test_units_objective_equals_the_batch_sum_of_channels():
    acts = {"blocks.5": torch.randn(3, 40, 7, 7, requires_grad=True)}
    units = [4, 0, 39]
    fast_score = UnitsObjective("blocks.5", units)(acts)
    slow_score = Sum([Channel("blocks.5", u).batch(i) for i, u in enumerate(units)])(acts)
    assert torch.allclose(fast_score, slow_score)
    (g1,) = torch.autograd.grad(fast_score.sum(), acts["blocks.5"])
    (g2,) = torch.autograd.grad(slow_score.sum(), acts["blocks.5"])
    assert torch.allclose(g1, g2)
    centre = UnitsObjective("blocks.5", units, kind="neuron")(acts)
    assert torch.allclose(centre, acts["blocks.5"][[0, 1, 2], units, 3, 3])


def test_units_objective_is_validated():
    with pytest.raises(ConfigError, match="batch=2"):
        UnitsObjective("blocks.5", [1, 2]).validate({"blocks.5": (40, 7, 7)}, batch=3)
    with pytest.raises(UnitOutOfRangeError, match="0..39"):
        UnitsObjective("blocks.5", [1, 40]).validate({"blocks.5": (40, 7, 7)}, batch=2)
    with pytest.raises(ConfigError, match="units.kind"):
        UnitsObjective("blocks.5", [1], kind="pixel")


def test_contact_sheet_labels_every_tile():
    sheet = contact_sheet(torch.rand(5, 3, 20, 20), [f"{u}: 1.5" for u in range(5)], columns=3)
    assert sheet.size[0] > 3 * 20 and sheet.size[1] > 2 * 20
    with pytest.raises(ConfigError):
        contact_sheet(torch.rand(2, 3, 8, 8), ["only one"])


def test_units_mode_from_the_hydra_config(plain_lite0, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[2] / "conf"), version_base="1.3"):
        cfg = compose(
            "units",
            overrides=["units.layer=blocks.0", "units.list=[3,0,9]", "units.batch=2", "steps=3", "param.size=32",
                       "transforms.resize=false", "transforms.pad=0", "transforms.jitter=2", "transforms.jitter_after=0", "progress=false"],
        )
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert container["perf"]["fold_bn"] and container["logger"]["kind"] == "none"
    sheet = run_units(container, tmp_path, model=copy.deepcopy(plain_lite0))
    assert sheet == tmp_path / "contact_sheet.png" and sheet.stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == ["0.png", "3.png", "9.png"]
    summary = json.loads((tmp_path / "units.json").read_text())
    assert summary["units"] == [3, 0, 9] and set(summary["scores"]) == {"3", "0", "9"}
    assert summary["unit_steps_per_s"] > 0


def test_banded_grid_sample_equals_one_call():
    """With more threads than images the resample runs as bands; values and gradients are unchanged."""
    from featviz.transforms import _grid_sample

    theta = torch.tensor([[[0.8, -0.2, 0.03], [0.2, 0.8, -0.02]]])
    grid = F.affine_grid(theta, [1, 3, 60, 48], align_corners=False)
    image = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grad_out = torch.randn(1, 3, 60, 48, generator=torch.Generator().manual_seed(1))
    want = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    (want_grad,) = torch.autograd.grad(want, image, grad_out)
    threads = torch.get_num_threads()
    try:
        for n in (2, 4, 7):  # 7 does not divide 60 rows: falls back to 6 bands
            torch.set_num_threads(n)
            got = _grid_sample(image, grid)
            (got_grad,) = torch.autograd.grad(got, image, grad_out)
            assert torch.equal(got, want)
            assert torch.allclose(got_grad, want_grad, atol=1e-6)
    finally:
        torch.set_num_threads(threads)


def test_folding_is_checked_on_a_small_probe_unless_the_network_refuses_it(plain_lite0) -> None:
    from torch import nn

    from featviz.models import FeatureModel
    from featviz.models.feature_model import CHECK_SIDE

    assert copy.deepcopy(plain_lite0)._check_side() == CHECK_SIDE  # 64 px instead of 224: the probe passes cost a quarter
    # A flatten into a fixed-size linear layer takes only its own size: probed at it, and still folded.
    fixed = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 96 * 96, 2))
    model = FeatureModel(fixed, input_size=96)
    assert model._check_side() == 96
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        want = model(x, ["logits"])["logits"]
    model.optimize(keep=[])
    with torch.no_grad():
        got = model(x, ["logits"])["logits"]
    assert model.folded and rel_error(got, want) < 1e-5
