"""Convolution + activation fusion (featviz.models.speedups.fusion): same values and input gradients as the
plain network, the fused kernel really runs, and a layer asked for by name is unfused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import rel_error

from featviz.models.speedups import fusion
from featviz.models.speedups.fusion import FusedConvAct, fuse_conv_activations
from featviz.models import FeatureModel, build_model
from featviz.objectives.units import Channel
from featviz.models.speedups.options import PerfOptions


@pytest.fixture(autouse=True)
def fuse_every_size(monkeypatch):
    """Small test images would fall under the size at which fusing pays; fuse them all."""
    monkeypatch.setattr(fusion, "MIN_FUSED_ELEMENTS", 0)


@pytest.fixture(scope="module")
def fused(plain_lite0):
    return copy.deepcopy(plain_lite0).optimize(keep=["blocks.8"])


def _input_grad(model: FeatureModel, x: torch.Tensor, layer: str) -> torch.Tensor:
    xi = x.clone().requires_grad_(True)
    Channel(layer, 5)(model(xi, [layer])).sum().backward()
    assert xi.grad is not None
    return xi.grad


def test_every_conv_relu6_chain_of_lite0_is_fused(fused, plain_lite0):
    # The stem, 16 depthwise convolutions, 15 expansions and the head: each is followed by a
    # (folded) BatchNorm and a ReLU6. The projections have no activation.
    assert len(fused.fused) == 33
    assert isinstance(fused.net.get_submodule("blocks.3.expand_conv"), FusedConvAct)
    assert isinstance(fused.net.get_submodule("blocks.3.expand_act"), nn.Identity)
    assert fused.layer_names == plain_lite0.layer_names  # no layer name added or lost
    unfused = copy.deepcopy(plain_lite0).optimize(PerfOptions(fuse_activations=False), keep=["blocks.8"])
    assert fused.state_dict().keys() == unfused.state_dict().keys()  # weights keep their names


def test_fused_model_gives_the_plain_activations_and_gradients(plain_lite0, fused):
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    layers = ["blocks.2", "blocks.5.depthwise_act", "blocks.8", "logits"]
    with torch.no_grad():
        want, got = plain_lite0(x, layers), fused(x, layers)
    for layer in layers:
        assert rel_error(got[layer], want[layer]) < 1e-5, layer
    assert rel_error(_input_grad(fused, x, "blocks.8"), _input_grad(plain_lite0, x, "blocks.8")) < 1e-4


def test_the_fused_kernel_runs(fused):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    calls = _graph_ops(fused(x, ["blocks.1"])["blocks.1"])
    # stem, blocks.0 depthwise, blocks.1 expansion and depthwise: four fused calls in the graph.
    assert sum("ConvActFunction" in c for c in calls) == 4
    assert not any("Hardtanh" in c for c in calls)


def _graph_ops(out: torch.Tensor) -> list[str]:
    names, stack, seen = [], [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(n for n, _ in node.next_functions)
    return names


def test_small_activations_stay_unfused(fused, monkeypatch):
    monkeypatch.setattr(fusion, "MIN_FUSED_ELEMENTS", 200_000)
    conv_act = fused.net.get_submodule("blocks.1.expand_conv")  # 16 -> 96 channels, stride 1
    big = torch.rand(1, 16, 50, 50, requires_grad=True).contiguous(memory_format=torch.channels_last)  # 240k outputs
    small = torch.rand(1, 16, 30, 30, requires_grad=True).contiguous(memory_format=torch.channels_last)  # 86k
    assert any("ConvActFunction" in op for op in _graph_ops(conv_act(big)))
    assert not any("ConvActFunction" in op for op in _graph_ops(conv_act(small)))


def test_asking_for_a_convolution_unfuses_only_that_one(plain_lite0):
    model = copy.deepcopy(plain_lite0).optimize()
    x = torch.rand(1, 3, 64, 64)
    before = set(model.fused)
    with torch.no_grad():
        got = model(x, ["blocks.3.expand_conv", "blocks.4.depthwise_act"])
        want = plain_lite0(x, ["blocks.3.expand_conv", "blocks.4.depthwise_act"])
    assert before - set(model.fused) == {"blocks.3.expand_conv"}  # the activation's own name stays fused
    for layer in want:
        assert rel_error(got[layer], want[layer]) < 1e-5, layer
    with torch.no_grad():  # a folded BatchNorm's name (an Identity) passes the conv output on: unfused too
        bn = model(x, ["blocks.5.bn1"])["blocks.5.bn1"]
        assert rel_error(bn, plain_lite0(x, ["blocks.5.bn1"])["blocks.5.bn1"]) < 1e-5
    assert "blocks.5.depthwise_conv" not in model.fused


def test_unfusable_inputs_take_the_plain_path(plain_lite0, fused):
    conv_act = fused.net.get_submodule("blocks.2.depthwise_conv")
    block = plain_lite0.net.get_submodule("blocks.2")
    h = torch.randn(1, 144, 16, 16)
    with torch.no_grad():
        want = block.depthwise_act(block.bn1(block.depthwise_conv(h)))
        assert rel_error(conv_act(h), want) < 1e-5  # NCHW memory: the plain convolution and activation
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: plain path, bf16 result
            assert conv_act(h.contiguous(memory_format=torch.channels_last)).dtype == torch.bfloat16


def test_torchvision_mobilenet_is_fused_and_exact():
    ref = build_model("mobilenet_v2", weights="none", input_size=64)
    opt = copy.deepcopy(ref).optimize()
    assert len(opt.fused) == 35  # the stem, 17 expansions (one block has none), 17 depthwise
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_error(opt(x)["logits"], ref(x)["logits"]) < 1e-5
    assert rel_error(_input_grad(opt, x, "features.6"), _input_grad(ref, x, "features.6")) < 1e-4


class _ReusesTheConvOutput(nn.Module):
    """conv -> ReLU, but the pre-activation also feeds a sum: fusing would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.act(h) + h


def test_a_chain_whose_preactivation_is_reused_is_left_alone():
    net = _ReusesTheConvOutput().eval().requires_grad_(False).to(memory_format=torch.channels_last)
    probe = torch.randn(1, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    assert fuse_conv_activations(net, probe) == []
    assert isinstance(net.conv, nn.Conv2d) and isinstance(net.act, nn.ReLU)


class _TwoActivationsOnOneConv(nn.Module):
    """One convolution read by two activations: neither can take the convolution's place."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.relu6 = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.relu(h) + self.relu6(h)


def test_a_convolution_read_by_two_activations_is_left_alone():
    net = _TwoActivationsOnOneConv().eval().requires_grad_(False).to(memory_format=torch.channels_last)
    probe = torch.randn(1, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    assert fuse_conv_activations(net, probe) == []
    assert isinstance(net.conv, nn.Conv2d) and isinstance(net.relu, nn.ReLU)


def test_fusion_can_be_switched_off(plain_lite0):
    model = copy.deepcopy(plain_lite0).optimize(PerfOptions(fuse_activations=False))
    assert model.fused == {} and model.folded


def test_a_failing_fused_call_leaves_the_network_unfused(plain_lite0, monkeypatch):
    def unsupported(*_args: object) -> torch.Tensor:
        raise RuntimeError("no oneDNN post-ops in this build")

    monkeypatch.setattr(fusion._ConvActFunction, "forward", staticmethod(unsupported))
    net = copy.deepcopy(plain_lite0).optimize(PerfOptions(fuse_activations=False)).net
    probe = torch.rand(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    assert fuse_conv_activations(net, probe) == []
    assert not any(isinstance(m, FusedConvAct) for m in net.modules())
    assert isinstance(net.get_submodule("blocks.3.expand_act"), nn.ReLU6)
