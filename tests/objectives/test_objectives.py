import pytest
import torch

from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.objectives.units import Channel, ClassLogit, ClassProb, DeepDream, Neuron
from featviz.objectives import build_objective


def acts(b=2, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return {"l": torch.randn(b, 4, 5, 5, generator=g).to(device), "logits": torch.randn(b, 10, generator=g).to(device)}


def test_basic_objectives(device):
    a = acts(device=device)
    assert torch.allclose(Channel("l", 2)(a), a["l"][:, 2].mean((1, 2)))
    assert torch.allclose(Neuron("l", 1)(a), a["l"][:, 1, 2, 2])
    assert torch.allclose(Neuron("l", 1, x=0, y=4)(a), a["l"][:, 1, 4, 0])
    assert torch.allclose(DeepDream("l")(a), (a["l"] ** 2).mean((1, 2, 3)))
    assert torch.allclose(ClassLogit(3)(a), a["logits"][:, 3])
    assert torch.allclose(ClassProb(3)(a), a["logits"].softmax(1)[:, 3])


def test_algebra(device):
    a = acts(device=device)
    c1, c2 = Channel("l", 0), Channel("l", 1)
    assert torch.allclose((c1 + c2)(a), c1(a) + c2(a))
    assert torch.allclose((c1 - c2)(a), c1(a) - c2(a))
    assert torch.allclose((2 * c1)(a), 2 * c1(a))
    assert torch.allclose((c1 * 0.5)(a), 0.5 * c1(a))
    assert torch.allclose((-c1)(a), -c1(a))
    assert torch.allclose((c1 + 1.0)(a), c1(a) + 1)
    assert (c1 + ClassLogit(2)).layers == {"l", "logits"}
    with pytest.raises(ConfigError):
        c1 * c2  # noqa: B018


def test_batch_gives_each_image_its_own_objective():
    a = acts(3)
    obj = Channel("l", 0).batch(0) + Channel("l", 3).batch(2)
    out = obj(a)
    assert torch.allclose(out, torch.stack([a["l"][0, 0].mean(), torch.tensor(0.0), a["l"][2, 3].mean()]))


def test_channel_gradient_is_zero_for_other_channels():
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    Channel("l", 2)({"l": x}).sum().backward()
    assert x.grad[:, 2].abs().sum() > 0
    assert x.grad[:, [0, 1, 3]].abs().sum() == 0


def test_validation_names_the_range():
    shapes = {"l": (4, 5, 5), "logits": (10,)}
    with pytest.raises(UnitOutOfRangeError, match=r"0\.\.3"):
        Channel("l", 4).validate(shapes, 1)
    with pytest.raises(UnitOutOfRangeError, match="x=7"):
        Neuron("l", 0, x=7).validate(shapes, 1)
    with pytest.raises(UnitOutOfRangeError, match="class 10"):
        ClassLogit(10).validate(shapes, 1)
    with pytest.raises(UnitOutOfRangeError, match="batch=2"):
        Channel("l", 0).batch(2).validate(shapes, 2)


def test_build_from_config():
    a = acts()
    assert torch.allclose(build_objective(kind="channel", layer="l", unit=1, negate=True)(a), -Channel("l", 1)(a))
    summed = build_objective(kind="sum", terms=[{"kind": "channel", "layer": "l", "unit": 0, "batch": 0}, {"kind": "neuron", "layer": "l", "unit": 1, "weight": 2.0}])
    assert torch.allclose(summed(a), Channel("l", 0).batch(0)(a) + 2 * Neuron("l", 1)(a))
    with pytest.raises(ConfigError, match="unknown objective"):
        build_objective(kind="bogus")
    with pytest.raises(ConfigError):
        build_objective(kind="channel", layer="l")  # no unit
