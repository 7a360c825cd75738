"""Gradient preconditioners and the in-place parameter blur."""

from __future__ import annotations

import pytest
import torch
from conftest import hf_share
import torch.nn.functional as F

from featviz import objectives, render
from featviz.errors import ConfigError
from featviz.params.fourier import FFTImage
from featviz.params.pixel import PixelImage
from featviz.regularizers.preconditioners import GradientBlur, GradientNormalize, ParamBlur, build_preconditioners, gaussian_transfer, normalize_frequencies
from featviz.ops import laplacian_merge, laplacian_split
from featviz.ops import gaussian_blur, gaussian_kernel1d, total_variation
from featviz.transforms import build_transforms

SIZE = 48
LAYER, UNIT = "blocks.3", 5


def plain_gradient(model, param: PixelImage) -> torch.Tensor:
    """Gradient of the render loop's loss (minus the objective) with respect to the pixels."""
    pixels = param.pixels.detach().clone().requires_grad_(True)
    images = param.to_rgb(pixels)
    loss = -objectives.channel(LAYER, UNIT)(model(images, [LAYER])).mean()
    loss.backward()
    assert pixels.grad is not None
    return pixels.grad


def one_sgd_step(model, param: PixelImage, callbacks) -> torch.Tensor:
    """Pixel change made by one SGD step of lr 1 with these callbacks."""
    before = param.pixels.detach().clone()
    render(
        model,
        objectives.channel(LAYER, UNIT),
        param=param,
        transforms=build_transforms(),
        optimizer=lambda p: torch.optim.SGD(p, lr=1.0),
        steps=1,
        callbacks=callbacks,
        device="cpu",
    )
    return param.pixels.detach() - before


@pytest.mark.parametrize(
    "hook, transform",
    [
        (GradientBlur(1.5), lambda g: gaussian_blur(g, 1.5)),
        (GradientNormalize(3), lambda g: normalize_frequencies(g, 3)),
    ],
    ids=["blur", "normalize"],
)
def test_the_optimizer_sees_the_transformed_gradient(lite0, hook, transform) -> None:
    param = PixelImage(SIZE, generator=torch.Generator().manual_seed(0))
    expected = -transform(plain_gradient(lite0, param))
    step = one_sgd_step(lite0, param, [hook])
    assert torch.allclose(step, expected, atol=1e-6 * float(expected.abs().max()))
    assert not torch.allclose(step, -plain_gradient(lite0, param), atol=1e-3 * float(expected.abs().max()))


def test_hooks_are_removed_when_the_render_ends(lite0) -> None:
    param = PixelImage(SIZE, generator=torch.Generator().manual_seed(0))
    one_sgd_step(lite0, param, [GradientBlur(2.0)])
    # A later plain render of the same parameter takes plain gradient steps.
    expected = -plain_gradient(lite0, param)
    assert torch.allclose(one_sgd_step(lite0, param, []), expected, atol=1e-6 * float(expected.abs().max()))


def test_laplacian_pyramid_round_trips_and_equalizes_octaves() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    bands = laplacian_split(x, 4)
    assert [b.shape[-1] for b in bands] == [32, 16, 8, 4]
    assert torch.allclose(laplacian_merge(bands), x, atol=1e-5)
    # A gradient dominated by coarse structure: normalization shifts energy to the fine octave
    # and keeps the overall RMS (it only changes the direction).
    coarse = F.interpolate(torch.randn(2, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear", align_corners=False)
    grad = 10 * coarse + 0.01 * x
    out = normalize_frequencies(grad, 4)
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    assert rms(out) == pytest.approx(rms(grad), rel=1e-4)
    fine_to_coarse = lambda t: rms(laplacian_split(t, 4)[0]) / rms(laplacian_split(t, 4)[-1])  # noqa: E731
    assert fine_to_coarse(out) > 1.5 * fine_to_coarse(grad)


def test_gradient_preconditioners_need_the_pixel_param() -> None:
    fft = FFTImage(SIZE)
    with pytest.raises(ConfigError, match="param=pixel"):
        build_preconditioners(fft, grad_blur_sigma=1.0)
    with pytest.raises(ConfigError, match="param=pixel"):
        build_preconditioners(fft, grad_normalize=4)
    with pytest.raises(ConfigError, match="param.size >= 64"):
        build_preconditioners(PixelImage(32), grad_normalize=6)
    with pytest.raises(ConfigError, match="grad_normalize"):
        build_preconditioners(PixelImage(32), grad_normalize=1)
    with pytest.raises(ConfigError, match="param_blur_every"):
        build_preconditioners(PixelImage(32), param_blur=1.0, param_blur_every=0)
    assert build_preconditioners(fft) == []
    kinds = [type(c) for c in build_preconditioners(PixelImage(32), grad_blur_sigma=1.0, grad_normalize=3, param_blur=0.5)]
    assert kinds == [GradientBlur, GradientNormalize, ParamBlur]


def test_param_blur_smooths_pixels() -> None:
    param = PixelImage(32, sd=1.0, generator=torch.Generator().manual_seed(0))
    before = param().detach()
    ParamBlur(1.0).apply(param)
    assert float(total_variation(param().detach())) < 0.5 * float(total_variation(before))


def test_param_blur_on_fft_is_a_circular_gaussian_blur() -> None:
    """Scaling the spectrum by the transfer function = blurring the decoded image (wrapping)."""
    param = FFTImage(32, sd=0.01, decorrelate=True, value_range="clamp", generator=torch.Generator().manual_seed(0))
    before = param().detach() - 0.5  # clamp range: the image is the linear decode + 0.5
    ParamBlur(1.0).apply(param)
    after = param().detach() - 0.5
    k = gaussian_kernel1d(1.0)
    r, c = k.numel() // 2, 3
    ref = F.pad(before, [r, r, r, r], mode="circular")
    ref = F.conv2d(F.conv2d(ref, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    assert before.abs().max() < 0.5  # still inside the clamp's linear range
    assert torch.allclose(after, ref, atol=2e-3 * float(before.abs().max()))
    assert gaussian_transfer(32, 1.0)[0, 0] == 1.0  # the mean colour is kept


def test_param_blur_refuses_params_it_cannot_blur_exactly() -> None:
    from featviz.params.fourier import SharedFFTImage

    with pytest.raises(ConfigError, match="regularizer.blur"):
        build_preconditioners(SharedFFTImage(32, batch=2), param_blur=1.0)


def _render_hf(lite0, callbacks) -> float:
    generator = torch.Generator().manual_seed(0)
    param = PixelImage(SIZE, generator=generator)
    result = render(
        lite0, objectives.channel(LAYER, UNIT), param=param, transforms=build_transforms(), steps=10,
        callbacks=callbacks, device="cpu", generator=generator,
    )
    return hf_share(result.images)


def test_each_method_lowers_high_frequency_share_in_a_render(lite0) -> None:
    plain = _render_hf(lite0, [])
    for cb in (GradientBlur(1.0), ParamBlur(1.0, every=2)):
        assert _render_hf(lite0, [cb]) < 0.8 * plain, type(cb).__name__


def test_build_run_wires_config_keys_to_callbacks() -> None:
    from featviz.app.build import build_run
    from featviz.app.config import compose, to_plain

    overrides = [
        "logger=none", "param=pixel", "param.size=32", "param.grad_blur_sigma=1.0", "param.grad_normalize=3",
        "regularizer.param_blur=0.5", "regularizer.param_blur_every=4", "regularizer.bilateral=10", "device=cpu",
        "model.weights=none", "perf.fold_bn=false",
    ]
    parts = build_run(to_plain(compose(overrides)))
    kinds = {type(c): c for c in parts.callbacks}
    assert kinds[GradientBlur].sigma == 1.0
    assert kinds[GradientNormalize].levels == 3
    assert (kinds[ParamBlur].sigma, kinds[ParamBlur].every) == (0.5, 4)
    assert [r.name for r in parts.regularizers] == ["bilateral"]
