"""Colour and contrast statistics (featviz.metrics.image) with known answers, the moderate unseen
views, and the reference folder's statistics beside a run's (``reference/*``)."""

from __future__ import annotations

import pytest
import torch

from featviz.images import save_png
from featviz.metrics.callback import MetricsCallback
from featviz.metrics.image import colourfulness, image_metrics, mean_saturation, rms_contrast
from featviz.metrics.reference import ReferenceSet
from featviz.metrics.scorer import ReferenceScorer
from featviz.metrics.views import ModerateViews, view_metrics
from featviz.models import FeatureModel, build_model
from featviz.objectives.units import class_logit
from featviz.params.pixel import PixelImage
from featviz.render import render
from featviz.transforms import Resize


def checkerboard(a: tuple[float, float, float], b: tuple[float, float, float], size: int = 32, cell: int = 4) -> torch.Tensor:
    """``[1, 3, size, size]`` cells of colour ``a`` and ``b``."""
    idx = torch.arange(size) // cell
    mask = ((idx[:, None] + idx[None, :]) % 2).bool()
    return torch.where(mask, torch.tensor(a)[:, None, None], torch.tensor(b)[:, None, None])[None]


def test_grey_images_have_no_colour_and_a_constant_one_no_contrast() -> None:
    grey = torch.rand(2, 1, 32, 32).expand(2, 3, 32, 32)
    assert colourfulness(grey).abs().max() < 1e-3
    assert mean_saturation(grey).abs().max() == 0
    constant = torch.full((1, 3, 16, 16), 0.3)
    assert float(rms_contrast(constant)) == pytest.approx(0.0, abs=1e-7)
    black = torch.zeros(1, 3, 8, 8)
    assert float(mean_saturation(black)) == 0.0  # max = 0: saturation defined as 0, not NaN


def test_a_red_green_checkerboard_is_highly_colourful() -> None:
    board = checkerboard((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    # rg = +-255 (std 255), yb = 127.5 - 0 in both cells (std 0, mean 127.5): 255 + 0.3 * 127.5.
    assert float(colourfulness(board)) == pytest.approx(255 + 0.3 * 127.5, rel=1e-4)
    assert float(mean_saturation(board)) == pytest.approx(1.0)
    # Luma 0.299 and 0.587 on alternate cells: std = half their difference.
    assert float(rms_contrast(board)) == pytest.approx((0.587 - 0.299) / 2, rel=1e-4)
    # A black-and-white board: all contrast, no colour.
    bw = checkerboard((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert float(rms_contrast(bw)) == pytest.approx(0.5, rel=1e-4)
    assert float(colourfulness(bw)) < 1e-3


def test_image_metrics_has_the_colour_statistics_only_for_rgb() -> None:
    rgb = image_metrics(checkerboard((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)))
    assert {"colourfulness", "rms_contrast", "saturation", "hf_share", "spectral_slope"} <= set(rgb)
    gray = image_metrics(torch.rand(1, 1, 32, 32))
    assert "rms_contrast" in gray and "colourfulness" not in gray and "saturation" not in gray


def test_colourfulness_has_a_gradient_on_a_grey_image() -> None:
    grey = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)
    colourfulness(grey + 0.01 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert torch.isfinite(grey.grad).all() and grey.grad.abs().sum() > 0


# --- moderate views ------------------------------------------------------------------------


def test_moderate_views_are_seeded_and_sized() -> None:
    images = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    views = ModerateViews()
    a = views(images, torch.Generator().manual_seed(3), 40)
    b = views(images, torch.Generator().manual_seed(3), 40)
    assert a.shape == (2, 3, 40, 40) and torch.equal(a, b)
    assert not torch.equal(a, views(images, torch.Generator().manual_seed(4), 40))
    # Full area, no rotation, no flip, square: the view is the image resampled.
    identity = ModerateViews(area=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, rotate=0.0)
    torch.testing.assert_close(identity(images, torch.Generator().manual_seed(0), 48), images, atol=1e-5, rtol=0)
    for bad in ({"area": (0.0, 1.0)}, {"ratio": (1.2, 1.5)}, {"rotate": 90.0}):
        with pytest.raises(Exception, match="moderate view"):
            ModerateViews(**bad)


def test_a_photo_keeps_its_class_under_moderate_views(lite0: FeatureModel) -> None:
    from skimage import data

    photo = torch.from_numpy(data.coffee()).permute(2, 0, 1).float().div(255)[None]
    s = min(photo.shape[-2:])
    photo = torch.nn.functional.interpolate(photo[..., :s, :s], size=(128, 128), mode="bilinear", antialias=True, align_corners=False)
    scores = view_metrics(lite0, class_logit(967), photo, ModerateViews(), 6, torch.Generator().manual_seed(0))
    assert scores["top5"] == 1.0 and scores["top1"] >= 0.8


# --- the callback ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_64() -> FeatureModel:
    return build_model("efficientnet_lite0", input_size=64)


def test_callback_records_colour_moderate_views_and_the_reference_statistics(lite0_64: FeatureModel, tmp_path) -> None:
    folder = tmp_path / "photos"
    save_png(checkerboard((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))[0], folder / "red_green.png")
    save_png(checkerboard((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))[0], folder / "black_white.png")
    save_png(torch.full((3, 32, 32), 0.5), folder / "grey.png")
    scorer = ReferenceScorer(ReferenceSet.from_folder(folder))
    metrics = MetricsCallback(views=2, eval_model=lite0_64, reference=scorer)
    result = render(lite0_64, class_logit(967), param=PixelImage(32, generator=torch.Generator().manual_seed(0)),
                    transforms=[Resize(lite0_64.input_size)], steps=2, callbacks=[metrics], device="cpu")
    final = result.final
    for key in ("colourfulness", "rms_contrast", "saturation", "transfer/moderate_top1", "transfer/moderate_prob", "reference/colourfulness",
                "reference/rms_contrast", "reference/hf_share"):
        assert key in final, key
    assert final["colourfulness"] == pytest.approx(float(colourfulness(result.images)), rel=1e-5)
    # The median photo of the three: colourfulness 0 (grey), 0 (black-white) and high -> 0; contrast 0, 0.14, 0.5 -> 0.14.
    assert final["reference/colourfulness"] == pytest.approx(0.0, abs=1e-3)
    assert final["reference/rms_contrast"] == pytest.approx((0.587 - 0.299) / 2, rel=1e-3)
