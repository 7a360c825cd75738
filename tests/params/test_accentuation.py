"""Feature accentuation: a param started from a photo returns it at step 0; the distance keeps it close."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featviz.app.build import build_run
from featviz.errors import ConfigError
from featviz.images import save_png
from featviz.params import build_param
from featviz.params.init_image import load_photo, start_from
from featviz.regularizers.accentuation import PhotoDistance


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 48), indexing="ij")
    image = torch.stack([x, y, 0.5 + 0.4 * torch.sin(8 * x) * torch.cos(6 * y)])
    return save_png(image, tmp_path / "photo.png")


@pytest.mark.parametrize(
    "options",
    [{"kind": "fft"}, {"kind": "fft", "value_range": "clamp"}, {"kind": "shared_fft", "batch": 3}, {"kind": "pixel"},
     {"kind": "laplacian"}, {"kind": "fft", "decorrelate": False}],
    ids=["fft", "fft-clamp", "shared_fft", "pixel", "laplacian", "fft-rgb"],
)
def test_zero_steps_return_the_photo(photo: Path, options: dict) -> None:
    options = {"size": 32, "batch": 2, **options}
    param = build_param(generator=torch.Generator().manual_seed(0), **options)
    target = load_photo(photo, 32)
    start_from(param, target)
    with torch.no_grad():
        images = param()
    assert images.shape == (options["batch"], 3, 32, 32)
    assert float((images - target).abs().max()) < 2e-3  # the sigmoid's edge margin, below 1/255


def test_params_that_cannot_start_from_a_photo_are_refused(photo: Path) -> None:
    with pytest.raises(ConfigError, match="param.init_image"):
        start_from(build_param("maco", size=32), load_photo(photo, 32))
    with pytest.raises(ConfigError, match="param.init_image"):
        load_photo(photo.with_name("missing.png"), 32)


@pytest.mark.parametrize("layer", [None, "blocks.1"])
def test_the_distance_is_zero_at_the_photo_and_grows_away(lite0, photo: Path, layer: str | None) -> None:
    target = load_photo(photo, 32)
    term = PhotoDistance(1.0, target, lite0, layer)
    assert float(term.penalty(target)) == pytest.approx(0.0, abs=1e-10)
    assert float(term.penalty(target.flip(-1))) > 0.01


def test_a_run_config_starts_from_the_photo_and_needs_it_for_the_distance(lite0, photo: Path) -> None:
    cfg = {"param": {"kind": "fft", "size": 32, "init_image": str(photo)}, "objective": {"kind": "channel", "layer": "blocks.1", "unit": 0},
           "regularizer": {"accentuation": 2.0}, "device": "cpu", "steps": 1}
    parts = build_run(cfg, model=lite0)
    with torch.no_grad():
        assert float((parts.param() - load_photo(photo, 32)).abs().max()) < 2e-3
    assert [r.name for r in parts.regularizers] == ["accentuation"]
    with pytest.raises(ConfigError, match="param.init_image=PATH"):
        build_run({**cfg, "param": {"kind": "fft", "size": 32}}, model=lite0)
