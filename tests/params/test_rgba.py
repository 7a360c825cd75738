"""RGBA parameterization: alpha in [0, 1], composite shape, new backgrounds each call under a seed, the penalty, the saved alpha map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from featviz.errors import ConfigError
from featviz.models import FeatureModel
from featviz.objectives.units import Channel
from featviz.params import build_param
from featviz.params.rgba import RGBAImage
from featviz.regularizers.alpha import AlphaImages, AlphaPenalty
from featviz.render import render
from featviz.writer import RunWriter


def _rgba(seed: int = 0, batch: int = 2) -> RGBAImage:
    param = build_param("rgba", generator=torch.Generator().manual_seed(seed), size=32, batch=batch, sd=1.0)
    assert isinstance(param, RGBAImage)
    return param


def test_alpha_is_in_unit_range_and_the_composite_has_the_model_channels() -> None:
    param = _rgba()
    with torch.no_grad():
        rgba, out = param.rgba(), param()
    assert rgba.shape == (2, 4, 32, 32) and out.shape == (2, 3, 32, 32)
    alpha = rgba[:, 3:]
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1 and float(alpha.std()) > 0
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_every_call_composites_on_a_new_background_fixed_by_the_seed() -> None:
    a, b = _rgba(seed=3), _rgba(seed=3)
    first, second = a(), a()
    assert not torch.equal(first, second)  # a new background each call
    assert torch.equal(first, b()) and torch.equal(second, b())  # the same draws under one seed


def test_the_alpha_penalty_lowers_opacity() -> None:
    param = _rgba()
    penalty = AlphaPenalty(1.0, param)
    before = float(penalty.penalty(param()).mean().detach())
    opt = torch.optim.Adam(param.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        penalty.penalty(param()).mean().backward()
        opt.step()
    assert float(penalty.penalty(param()).mean().detach()) < before


def test_alpha_terms_refuse_an_opaque_param() -> None:
    with pytest.raises(ConfigError, match="regularizer.alpha"):
        AlphaPenalty(1.0, build_param("fft", size=32))


def test_the_alpha_map_is_saved(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FeatureModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), input_size=32, name="tiny")
    generator = torch.Generator().manual_seed(0)
    param = build_param("rgba", generator=generator, size=32)
    writer = RunWriter(tmp_path)
    render(model, Channel("1", 1), param, regularizers=[AlphaPenalty(0.5, param)], steps=2, device="cpu",
           generator=generator, callbacks=[AlphaImages(), writer])
    from PIL import Image

    assert Image.open(tmp_path / "final_rgba.png").mode == "RGBA"
    assert Image.open(tmp_path / "final_alpha.png").size == (32, 32) and (tmp_path / "final.png").is_file()
