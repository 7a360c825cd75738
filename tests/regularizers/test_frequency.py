"""Frequency penalization: each regularizer does what its name says, alone and in a render."""

from __future__ import annotations

import math

import pytest
import torch

from featviz import objectives, render
from featviz.errors import ConfigError
from featviz.params.pixel import PixelImage
from featviz.regularizers.frequency import L1, Bilateral, Blur, TotalVariation, build_regularizers
from featviz.ops import bilateral_filter, gaussian_blur, total_variation
from featviz.transforms import build_transforms

SIZE = 40
STEPS = 12


def hf_share(images: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of non-DC spectral power above ``cutoff`` cycles/pixel (computed here, not in featviz)."""
    x = images - images.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).mean(dim=(0, 1))
    fy = torch.fft.fftfreq(x.shape[-2])[:, None]
    fx = torch.fft.fftfreq(x.shape[-1])[None, :]
    high = power[(fx**2 + fy**2).sqrt() > cutoff].sum()
    return float(high / power.sum())


def step_edge(size: int = 24) -> torch.Tensor:
    """Left half dark, right half bright, plus a little noise: an edge in a noisy flat field."""
    img = torch.full((1, 3, size, size), 0.2)
    img[..., size // 2 :] = 0.8
    return img + 0.02 * torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_build_regularizers_keeps_only_nonzero_weights() -> None:
    assert build_regularizers() == []
    regs = build_regularizers(l1=1.0, tv=2.0, blur=3.0, bilateral=4.0, bilateral_sigma=2.0, bilateral_range=0.2)
    assert [type(r) for r in regs] == [L1, TotalVariation, Blur, Bilateral]
    assert [r.weight for r in regs] == [1.0, 2.0, 3.0, 4.0]
    assert (regs[3].sigma, regs[3].range_sigma) == (2.0, 0.2)


@pytest.mark.parametrize(
    "kwargs, fix",
    [
        ({"tv": -1.0}, "regularizer.tv"),
        ({"bilateral": float("nan")}, "regularizer.bilateral"),
        ({"blur": 1.0, "blur_sigma": 0.0}, "blur_sigma"),
        ({"bilateral": 1.0, "bilateral_sigma": -1.0}, "bilateral_sigma"),
        ({"bilateral": 1.0, "bilateral_range": 0.0}, "bilateral_range"),
    ],
)
def test_bad_settings_name_the_key(kwargs: dict[str, float], fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        build_regularizers(**kwargs)


def test_bilateral_keeps_edges_that_blur_smears() -> None:
    img = step_edge()
    mid = img.shape[-1] // 2
    blurred = gaussian_blur(img, 1.5)
    bilateral = bilateral_filter(img, 1.5, 0.1)
    # Contrast across the edge (columns next to it): the Gaussian halves it, the bilateral keeps it.
    edge = lambda x: float((x[..., mid] - x[..., mid - 1]).mean())  # noqa: E731
    assert edge(img) == pytest.approx(0.6, abs=0.03)
    assert edge(blurred) < 0.45
    assert edge(bilateral) > 0.55
    # Both still smooth the noise inside the flat halves.
    flat = lambda x: float(x[..., 4:-4, 2 : mid - 4].std())  # noqa: E731
    assert flat(bilateral) < 0.6 * flat(img)
    assert flat(blurred) < 0.6 * flat(img)


def test_bilateral_with_wide_range_is_a_gaussian_blur() -> None:
    img = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    wide = bilateral_filter(img, 1.0, 1e4)
    # The bilateral window is 2 sigma wide, the Gaussian's 3 sigma: equal up to the far tails.
    assert torch.allclose(wide[..., 3:-3, 3:-3], gaussian_blur(img, 1.0)[..., 3:-3, 3:-3], atol=0.02)
    assert not torch.allclose(bilateral_filter(img, 1.0, 0.05), gaussian_blur(img, 1.0), atol=0.02)


def test_bilateral_works_on_images_smaller_than_its_window() -> None:
    img = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    out = bilateral_filter(img, 3.0, 0.1)
    assert out.shape == img.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("reg", [Blur(1.0, 1.0), Bilateral(1.0, 1.0, 0.1)], ids=["blur", "bilateral"])
def test_filter_pull_gradient_points_to_the_filtered_image(reg: Blur | Bilateral) -> None:
    """d penalty / d x = scale * (x - filter(x)) / (H*W): a descent step moves x towards filter(x)."""
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3), requires_grad=True)
    reg.penalty(img).sum().backward()
    expected = reg.scale * (img.detach() - reg.filtered(img.detach())) / (16 * 16)
    assert img.grad is not None
    assert torch.allclose(img.grad, expected, rtol=1e-4, atol=1e-7 * reg.scale)


def _render(lite0, regularizers) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    param = PixelImage(SIZE, generator=generator)
    result = render(
        lite0,
        objectives.channel("blocks.3", 5),
        param=param,
        transforms=build_transforms(),
        regularizers=regularizers,
        steps=STEPS,
        device="cpu",
        generator=generator,
    )
    return result.images


@pytest.fixture(scope="module")
def unregularized(lite0) -> torch.Tensor:
    return _render(lite0, [])


def test_tv_lowers_total_variation(lite0, unregularized: torch.Tensor) -> None:
    with_tv = _render(lite0, [TotalVariation(1.0)])
    assert float(total_variation(with_tv)) < 0.5 * float(total_variation(unregularized))


def test_l1_pulls_towards_its_centre(lite0, unregularized: torch.Tensor) -> None:
    with_l1 = _render(lite0, [L1(2.5, center=0.5)])
    dist = lambda x: float((x - 0.5).abs().mean())  # noqa: E731
    assert dist(with_l1) < 0.7 * dist(unregularized)


@pytest.mark.parametrize("reg", [Blur(1.0, 1.0), Bilateral(1.0, 1.0, 0.1)], ids=["blur", "bilateral"])
def test_filter_pulls_lower_high_frequency_share(lite0, unregularized: torch.Tensor, reg: Blur | Bilateral) -> None:
    images = _render(lite0, [reg])
    assert hf_share(images) < 0.8 * hf_share(unregularized)
    assert math.isfinite(hf_share(images))
