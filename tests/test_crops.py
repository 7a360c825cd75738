"""Many crops per step: batch shapes, view-major order, seeds, the shrinking schedule, scoring per view block."""

from __future__ import annotations

import pytest
import torch

from featviz.errors import ConfigError
from featviz.models.layout import LayerMap, Layout
from featviz.render import score_views
from featviz.schedules import CropSchedule
from featviz.transforms import RandomCrops, build_transforms


def _images(batch: int = 2, side: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("fuse", [False, True])
def test_crops_make_one_batch_at_the_model_size(fuse: bool) -> None:
    stack = build_transforms(pad=2, jitter=2, rotate=5, crops=4, crop_size=(0.5, 0.9), resize=48, fuse_geometry=fuse)
    out = stack(_images(), torch.Generator().manual_seed(1))
    assert out.shape == (8, 3, 48, 48)


def test_crops_are_view_major_and_whole_crops_are_the_image() -> None:
    images = _images(batch=3)
    out = RandomCrops(2, size=(1.0, 1.0))(images, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:3], images, atol=1e-6) and torch.allclose(out[3:], images, atol=1e-6)


def test_crops_follow_the_seed() -> None:
    stack = build_transforms(jitter=3, crops=3, resize=40, fuse_geometry=True)
    a, b, c = (stack(_images(), torch.Generator().manual_seed(s)) for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crop_sizes_shrink_with_the_schedule() -> None:
    crops = RandomCrops(4, size=(0.6, 1.0), end=(0.2, 0.4))
    schedule = CropSchedule.of(build_transforms(crops=1))  # fixed size: nothing to schedule
    assert schedule is None
    assert crops.size_range() == (0.6, 1.0)
    crops.progress = 1.0
    assert crops.size_range() == pytest.approx((0.2, 0.4))
    sides = crops.plan(5, (32, 32), torch.Generator().manual_seed(0))[0][:, 0, 0]
    assert sides.shape == (20,) and float(sides.min()) >= 0.2 and float(sides.max()) <= 0.4


@pytest.mark.parametrize("bad", [(0.0, 0.5), (0.6, 0.5), (0.5, 1.5), (0.5,)])
def test_bad_crop_sizes_are_one_line_errors(bad: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="transforms.crop_size"):
        RandomCrops(2, size=bad)


def test_each_view_block_is_scored_as_one_batch() -> None:
    """An objective that reads batch position 1 sees image 1 of every crop block, not crop 1."""
    def second_image(acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return acts["x"][1].sum().expand(2)

    acts = torch.arange(6.0).view(6, 1)  # 3 views of a batch of 2, view-major
    per_image = score_views(second_image, LayerMap({"x": acts}, {"x": Layout("vector")}), batch=2)  # type: ignore[arg-type]
    assert per_image.tolist() == [3.0, 3.0]  # mean of rows 1, 3, 5


@pytest.mark.parametrize("kind", ["pixel", "fft", "shared_fft", "laplacian", "cppn", "maco", "rgba"])
def test_crops_compose_with_every_parameterization(kind: str) -> None:
    from torch import nn

    from featviz.models import FeatureModel
    from featviz.objectives.units import Channel
    from featviz.params import build_param
    from featviz.render import render

    torch.manual_seed(0)
    model = FeatureModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), input_size=32, name="tiny")
    generator = torch.Generator().manual_seed(0)
    param = build_param(kind, generator=generator, size=32, batch=2)
    stack = build_transforms(jitter=2, crops=3, crop_size=(0.5, 1.0), resize=32, fuse_geometry=True)
    result = render(model, Channel("1", 2), param, stack, steps=2, device="cpu", generator=generator)
    assert result.images.shape == (2, 3, 32, 32) and torch.isfinite(torch.tensor(result.final["objective"]))
