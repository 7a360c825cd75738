"""Redirected ReLU/ReLU6: a dead unit gets a gradient, the forward pass is unchanged, exact after its steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featviz.errors import ConfigError
from featviz.models import FeatureModel
from featviz.models.redirected import Redirection, activations
from featviz.models.speedups.fusion import FusedConvAct, fuse_conv_activations
from featviz.objectives.units import Channel
from featviz.params import build_param
from featviz.render import render
from featviz.schedules import RedirectedReLU


def _dead_net(act: nn.Module, bias: float) -> nn.Sequential:
    """A 1x1 convolution whose every output sits at ``bias`` (outside the activation's range)."""
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.fill_(0.01)
        conv.bias.fill_(bias)
    return nn.Sequential(conv, act)


def _input_grad(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    out = net(x)
    (-out[:, 0].mean()).backward()  # maximize unit 0, as the render loop does
    return out.detach(), x.grad


@pytest.mark.parametrize(("act", "bias"), [(nn.ReLU(), -5.0), (nn.ReLU6(), -5.0), (nn.ReLU6(), 11.0)])
def test_a_dead_unit_gets_a_gradient_towards_the_active_range(act: nn.Module, bias: float) -> None:
    net, x = _dead_net(act, bias), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out, grad = _input_grad(net, x)
    assert torch.count_nonzero(grad) == 0
    redirection = Redirection(net)
    out_r, grad_r = _input_grad(net, x)
    redirection.remove()
    assert torch.equal(out, out_r)  # the forward pass is untouched
    if bias < 0:  # below zero: the gradient points up, to the active range
        assert float(grad_r.sum()) < 0  # loss gradient < 0: the optimizer raises the input
    else:  # above 6: pushing higher is dropped, so maximizing gets no push past 6
        assert torch.count_nonzero(grad_r) == 0
    out_e, grad_e = _input_grad(net, x)
    assert torch.equal(out_e, out) and torch.count_nonzero(grad_e) == 0  # exact again


def test_a_live_unit_keeps_its_exact_gradient() -> None:
    net, x = _dead_net(nn.ReLU6(), 1.0), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    _, exact = _input_grad(net, x)
    redirection = Redirection(net)
    _, redirected = _input_grad(net, x)
    redirection.remove()
    assert torch.equal(exact, redirected)


def test_fused_convolutions_honour_the_redirection() -> None:
    net = _dead_net(nn.ReLU6(), -5.0).to(memory_format=torch.channels_last)
    with torch.no_grad():
        net[0] = nn.Conv2d(3, 64, 1)
        net[0].weight.fill_(0.01)
        net[0].bias.fill_(-5.0)
    for p in net.parameters():
        p.requires_grad_(False)
    probe = torch.rand(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    pairs = fuse_conv_activations(net, probe)
    if not pairs:
        pytest.skip("this torch build's oneDNN does not fuse conv + ReLU6")
    assert isinstance(net[0], FusedConvAct) and activations(net) == [pairs[0].fused.act]
    redirection = Redirection(net)
    _, grad = _input_grad(net, probe)
    redirection.remove()
    assert float(grad.sum()) < 0
    _, exact = _input_grad(net, probe)
    assert torch.count_nonzero(exact) == 0


def test_the_render_is_exact_after_its_redirected_steps() -> None:
    torch.manual_seed(0)
    model = FeatureModel(_dead_net(nn.ReLU(inplace=True), -5.0), input_size=16, name="dead")
    hooked = []

    class Watch(RedirectedReLU):
        def apply(self, ctx, step):  # type: ignore[no-untyped-def]
            super().apply(ctx, step)
            hooked.append(bool(model.net[1]._forward_hooks))

    generator = torch.Generator().manual_seed(0)
    param = build_param("pixel", generator=generator, size=16)
    start = param().detach().clone()
    render(model, Channel("1", 0), param, steps=4, device="cpu", generator=generator, callbacks=[Watch(2)])
    assert hooked == [True, True, False, False, False]  # steps 0 and 1 redirected, exact from 2
    assert model.net[1].inplace and not model.net[1]._forward_hooks
    assert not torch.equal(param().detach(), start)  # the dead unit moved the image


def test_a_network_without_relu_modules_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.redirected_relu"):
        Redirection(nn.Sequential(nn.Conv2d(3, 2, 1), nn.GELU()))
