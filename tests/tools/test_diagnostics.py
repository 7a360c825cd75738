"""Checkerboard gradient maps and steepest-descent directions."""

from __future__ import annotations

import json

import pytest
import numpy as np
import torch
from PIL import Image
from conftest import hf_share, run_cli
from torch import nn

from featviz import objectives
from featviz.tools.diagnostics import checkerboard_maps, direction_image, magnitude_image, phase_contrast, probe_images, spatial_layers, steepest_directions
from featviz.app.cli import main as diagnostics_main
from featviz.errors import ConfigError
from featviz.models import FeatureModel


def tiny_net(stride: int) -> FeatureModel:
    """One 3x3 convolution (seeded weights, positive bias so the ReLU passes grey) and a ReLU."""
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.fill_(10.0)
    return FeatureModel(nn.Sequential(conv, nn.ReLU()), input_size=32, name=f"tiny_s{stride}")


def test_phase_contrast_detects_a_checkerboard() -> None:
    board = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2
    assert phase_contrast(1.0 + board.float()) == pytest.approx(1 / 1.5)  # phases average 1 or 2
    assert phase_contrast(torch.ones(32, 32)) == 0.0
    with pytest.raises(ConfigError, match="too small"):
        phase_contrast(torch.ones(10, 10), border=8)


def test_strided_convolutions_make_checkerboard_gradients() -> None:
    grey = probe_images("grey", 32)
    strided = checkerboard_maps(tiny_net(2), ["1"], grey)["1"]
    plain = checkerboard_maps(tiny_net(1), ["1"], grey)["1"]
    assert strided["stride"] == 2 and plain["stride"] == 1
    assert strided["phase_contrast_2"] > 0.2
    assert plain["phase_contrast_2"] < 1e-4
    assert strided["map"].shape == (32, 32)


def test_embedded_model_layers_and_stem_checkerboard(lite0) -> None:
    assert spatial_layers(lite0, 64) == [
        "conv_stem", "blocks.0", "blocks.1", "blocks.3", "blocks.5", "blocks.8", "blocks.11", "blocks.15", "conv_head",
    ]
    maps = checkerboard_maps(lite0, ["conv_stem", "blocks.3"], probe_images("grey", 64))
    assert maps["conv_stem"]["phase_contrast_2"] > 0.5
    assert maps["blocks.3"]["stride"] == 8
    img = magnitude_image(maps["blocks.3"]["map"])
    assert img.shape == (3, 64, 64) and float(img.min()) == 0.0 and float(img.max()) == 1.0


def test_probe_images_are_seeded() -> None:
    a = probe_images("noise", 16, 2, torch.Generator().manual_seed(3))
    b = probe_images("noise", 16, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (2, 3, 16, 16)
    with pytest.raises(ConfigError, match="grey or noise"):
        probe_images("white", 16)


def test_steepest_directions_order_high_frequencies(lite0) -> None:
    """The article's claim: the decorrelated space removes high frequencies.

    (Its other claim, that L-inf adds them, does not show in this share on EfficientNet-Lite0:
    the plain gradient is already about as high-frequency as its sign; docs/spectrum.md.)
    """
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4
    objective = objectives.channel("blocks.5", 3)
    d = steepest_directions(lite0, objective, image)
    assert set(d) == {"linf", "l2", "decorrelated"}
    assert set(d["linf"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    shares = {k: hf_share(v) for k, v in d.items()}
    assert shares["decorrelated"] < 0.1 * min(shares["l2"], shares["linf"])
    assert shares["linf"] > 0.5  # the sign spreads power like white noise (0.80 at this cut-off)
    # All three are ascent directions for the same objective.
    g = d["l2"]
    for name, v in d.items():
        assert float((g * v).sum()) > 0, name
    shown = direction_image(d["l2"])
    assert float(shown.min()) >= 0.0 and float(shown.max()) <= 1.0


def test_steepest_directions_reject_non_square_images(lite0) -> None:
    with pytest.raises(ConfigError, match="square"):
        steepest_directions(lite0, objectives.channel("blocks.3", 0), torch.rand(1, 3, 32, 40))


def test_checkerboard_command_writes_one_image_per_layer(tmp_path) -> None:
    proc = run_cli("checkerboard", "--layers", "conv_stem,blocks.1", "--size", "64", "--out", str(tmp_path), "logger=none")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"conv_stem.png", "blocks.1.png", "checkerboard.png", "checkerboard.json"}
    summary = json.loads((tmp_path / "checkerboard.json").read_text())
    assert summary["layers"]["blocks.1"]["stride"] == 4
    figure = np.asarray(Image.open(tmp_path / "checkerboard.png").convert("RGB")).astype(int)
    assert figure.shape[1] > 2 * 64 and (np.ptp(figure, axis=2) > 60).mean() > 0.1  # two panels in a colour scale, not grey
    assert summary["input"] == "grey"


def test_directions_command_and_its_errors(tmp_path, capsys) -> None:
    assert diagnostics_main(["directions", "--size", "48", "--out", str(tmp_path), "logger=none", "objective.layer=blocks.3"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"image.png", "linf.png", "l2.png", "decorrelated.png", "directions.png"}
    capsys.readouterr()
    assert diagnostics_main(["directions", "--image", str(tmp_path / "nope.png"), "logger=none"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert diagnostics_main(["checkerboard", "--layers", "blocks.99", "--size", "32", "--out", str(tmp_path / "x"), "logger=none"]) == 2
    assert "blocks.9" in capsys.readouterr().err
