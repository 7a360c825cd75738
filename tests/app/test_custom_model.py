"""A lab's own network, end to end: a CIFAR-sized grayscale CNN in the user's own module,
trained for a few steps, saved, and rendered through ``model=custom`` on the command line."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from PIL import Image

from featviz.app.build import build_run
from featviz.errors import ConfigError

# What a user's own file looks like; the test writes it to a folder on PYTHONPATH.
NET_SOURCE = '''
from torch import nn


class CifarNet(nn.Module):
    """A small CIFAR-style CNN: 32 px in, two conv stages, a linear classifier."""

    def __init__(self, in_channels: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, classes))

    def forward(self, x):
        return self.classifier(self.features(x))
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """``(module folder, state dict)``: the net trained 30 steps to tell bright from dark images."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "cifar_net.py").write_text(NET_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        net = importlib.import_module("cifar_net").CifarNet(in_channels=1)
    finally:
        sys.path.remove(str(folder))
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        labels = torch.randint(0, 2, (16,), generator=g)
        images = torch.rand(16, 1, 32, 32, generator=g) * 0.5 + labels[:, None, None, None] * 0.5
        loss = torch.nn.functional.cross_entropy(net(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]  # it learned something
    weights = folder / "cifar_gray.pth"
    torch.save(net.state_dict(), weights)
    return folder, weights


def model_overrides(weights: Path) -> list[str]:
    return ["model=custom", "model.net={_target_: cifar_net.CifarNet, in_channels: 1}", f"model.weights={weights}", "model.input_size=32"]


def test_a_grayscale_cifar_net_renders_a_grayscale_image(trained, tmp_path: Path) -> None:
    folder, weights = trained
    run = tmp_path / "run"
    proc = run_cli(
        *model_overrides(weights), "objective=channel", "objective.layer=features.3", "objective.unit=5",
        "param.size=32", "steps=8", "snapshots=[0,8]", "logger=none", "metrics.enabled=false", "progress=false",
        f"hydra.run.dir={run}", env={"PYTHONPATH": str(folder)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run / "result.json").read_text())
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert result["status"] == "completed" and result["final"]["objective"] > first["objective"]
    final = Image.open(run / "final.png")
    assert final.mode == "L" and final.size == (32, 32)


def test_channels_reach_the_param_and_rgb_only_kinds_are_refused(trained, monkeypatch) -> None:
    folder, weights = trained
    monkeypatch.syspath_prepend(str(folder))
    model = {"name": "custom", "net": {"_target_": "cifar_net.CifarNet", "in_channels": 1}, "weights": str(weights), "input_size": 32}
    cfg = {"model": model, "objective": {"kind": "channel", "layer": "features.3", "unit": 15}, "param": {"kind": "fft", "size": 32}, "steps": 1}
    parts = build_run(cfg)
    assert parts.model.in_channels == 1 and not parts.param.decorrelate
    assert parts.param().shape == (1, 1, 32, 32)
    with pytest.raises(ConfigError, match="param=maco draws RGB images but the model takes 1 channel"):
        build_run({**cfg, "param": {"kind": "maco", "size": 32}})
    with pytest.raises(ConfigError, match="model=custom needs its module"):
        build_run({**cfg, "model": {"name": "custom"}})
