import pytest
import torch

from featviz.errors import UnknownLayerError, UnknownModelError, WeightsError
from featviz.models import build_model


def test_frozen_and_eval(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    lite0.train()
    assert not lite0.training and not lite0.net.training


def test_forward_stops_at_deepest_requested_layer(lite0):
    called = []
    handles = [lite0.net.get_submodule(f"blocks.{i}").register_forward_hook(lambda m, i, o, n=i: called.append(n)) for i in range(16)]
    try:
        acts = lite0(torch.rand(1, 3, 64, 64), ["blocks.3", "blocks.1"])
    finally:
        for h in handles:
            h.remove()
    assert set(acts) == {"blocks.3", "blocks.1"}
    assert called == [0, 1, 2, 3]


def test_logits_and_shapes(lite0):
    shapes = lite0.layer_shapes(64, ["blocks.0", "blocks.10", "logits"])
    assert shapes == {"blocks.0": (16, 32, 32), "blocks.10": (112, 4, 4), "logits": (1000,)}
    assert lite0.num_classes == 1000 and lite0.input_size == 224


def test_unknown_layer_suggests_closest(lite0):
    with pytest.raises(UnknownLayerError, match=r"blocks\.1"):
        lite0(torch.rand(1, 3, 32, 32), ["block.1"])


def test_unknown_model():
    with pytest.raises(UnknownModelError, match="googlenet"):
        build_model("googlnet")


def test_torchvision_random_init_has_article_layer_names():
    m = build_model("googlenet", weights="none")
    assert "inception4a" in m.layer_names
    assert m.layer_shapes(64, ["inception4a"])["inception4a"][0] == 512


def test_missing_imagenet_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="model.weights=/path"):
        build_model("resnet18", weights="imagenet")


def test_weights_files(tmp_path):
    net = build_model("resnet18", weights="none").net
    good = tmp_path / "r18.pth"
    torch.save(net.state_dict(), good)
    loaded = build_model("resnet18", weights=str(good))
    assert torch.equal(loaded.net.fc.weight, net.fc.weight)
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("resnet18", weights=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="corrupt"):
        build_model("resnet18", weights=str(bad))
    with pytest.raises(WeightsError, match="do not fit"):
        build_model("alexnet", weights=str(good))


def test_pickled_objects_are_refused(tmp_path):
    """weights_only=True: a file that needs arbitrary unpickling is rejected, not executed."""
    evil = tmp_path / "evil.pth"
    torch.save({"x": torch.nn.Linear(2, 2)}, evil)  # a module, not a state dict of tensors
    with pytest.raises(WeightsError):
        build_model("resnet18", weights=str(evil))
