"""Tests for featviz.metrics: each metric on synthetic images with a known answer."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featviz.errors import ConfigError, UnknownModelError
from featviz.metrics.callback import MetricsCallback
from featviz.metrics.views import UnseenViews, class_scores, class_targets, view_metrics
from featviz.app.build import build_metrics_callback
from featviz.metrics.image import high_frequency_share, spectral_slope, steps_to_fraction
from featviz.ops import total_variation
from featviz.models import FeatureModel, build_model
from featviz.objectives.units import channel, class_logit, neuron
from featviz.writer import RunWriter
from featviz.params.pixel import PixelImage
from featviz.render import render
from featviz.transforms import Resize


def power_law_noise(n: int, exponent: float, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """Gaussian noise whose amplitude spectrum falls as ``1 / f**exponent`` (power slope ``-2 * exponent``)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.sqrt(torch.fft.fftfreq(n)[:, None] ** 2 + torch.fft.fftfreq(n)[None, :] ** 2)
    f[0, 0] = 1.0
    img = torch.fft.ifft2(torch.fft.fft2(torch.randn(batch, 3, n, n, generator=g)) / f**exponent).real
    return (img - img.mean()) / img.std() * 0.15 + 0.5


@pytest.fixture(scope="module")
def lite0_64() -> FeatureModel:
    """The same network fed 64 px inputs: the callback plumbing does not need 224 px, and is 12x cheaper."""
    return build_model("efficientnet_lite0", input_size=64)


# --- spectra -----------------------------------------------------------------------------


def test_white_noise_has_flat_spectrum() -> None:
    slopes = spectral_slope(power_law_noise(64, 0.0))
    assert slopes.shape == (4,)
    assert slopes.abs().max() < 0.3
    assert abs(float(slopes.mean())) < 0.15


def test_one_over_f_amplitude_noise_has_slope_minus_two() -> None:
    slopes = spectral_slope(power_law_noise(64, 1.0))
    assert float(slopes.mean()) == pytest.approx(-2.0, abs=0.2)
    steeper = spectral_slope(power_law_noise(64, 1.5))
    assert float(steeper.mean()) == pytest.approx(-3.0, abs=0.2)


def test_slope_is_not_fooled_by_non_periodic_borders() -> None:
    # A smooth ramp has a large jump between opposite borders; unwindowed, that jump alone
    # would read as a 1/f^2 spectrum. Added to white noise it must keep the slope near 0.
    ramp = torch.linspace(0, 0.3, 64).view(1, 1, 1, 64).expand(4, 3, 64, 64)
    assert abs(float(spectral_slope(power_law_noise(64, 0.0) + ramp).mean())) < 0.5


def test_hf_share_of_white_noise_is_the_area_outside_the_cutoff_circle() -> None:
    share = high_frequency_share(power_law_noise(64, 0.0), cutoff=0.25)
    assert float(share.mean()) == pytest.approx(1 - math.pi * 0.25**2, abs=0.03)


def test_hf_share_extremes() -> None:
    x = torch.arange(64, dtype=torch.float32)
    smooth = (0.5 + 0.3 * torch.sin(2 * math.pi * 2 * x / 64)).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    checker = ((x.view(-1, 1) + x.view(1, -1)) % 2).expand(1, 3, 64, 64)
    assert float(high_frequency_share(smooth)) < 0.01
    assert float(high_frequency_share(checker)) > 0.95
    assert float(high_frequency_share(torch.full((1, 3, 16, 16), 0.5))) == 0.0


def test_hf_cutoff_is_validated() -> None:
    with pytest.raises(ConfigError, match="hf_cutoff"):
        high_frequency_share(torch.zeros(1, 3, 8, 8), cutoff=0.0)


# --- total variation and convergence -----------------------------------------------------


def test_total_variation_known_values() -> None:
    x = torch.arange(16, dtype=torch.float32)
    constant = torch.full((1, 3, 16, 16), 0.3)
    stripes = (x % 2).view(1, 1, 1, 16).expand(1, 3, 16, 16)
    checker = ((x.view(-1, 1) + x.view(1, -1)) % 2).expand(1, 3, 16, 16)
    assert float(total_variation(constant)) == 0.0
    assert float(total_variation(stripes)) == pytest.approx(1.0)
    assert float(total_variation(checker)) == pytest.approx(2.0)


def test_steps_to_fraction() -> None:
    def hist(values: list[float]) -> list[dict[str, float]]:
        return [{"step": float(i), "objective": v} for i, v in enumerate(values)]

    assert steps_to_fraction(hist([0, 5, 8, 9.5, 10])) == 3
    assert steps_to_fraction(hist([10, 15, 20])) == 2  # threshold 19, not 18
    assert steps_to_fraction(hist([0, 10, 4, 9]), fraction=0.5) == 1  # first reached, not stayed
    assert math.isnan(steps_to_fraction(hist([3, 2, 1])))
    with pytest.raises(ConfigError, match="progress_fraction"):
        steps_to_fraction(hist([0, 1]), fraction=1.5)


# --- class targets and scores ------------------------------------------------------------


def test_class_targets() -> None:
    assert class_targets(class_logit(281), 1) == [281]
    assert class_targets(class_logit(281), 2) == [281, 281]
    assert class_targets(class_logit(281).batch(0) + class_logit(967).batch(1), 2) == [281, 967]
    assert class_targets(-class_logit(281), 1) == [None]
    assert class_targets(class_logit(1) + class_logit(2), 1) == [None]
    assert class_targets(channel("blocks.2", 0), 1) == [None]
    assert class_targets(neuron("logits", 5) + 0.1 * channel("blocks.2", 0), 1) == [5]


def test_class_scores() -> None:
    logits = torch.arange(10, dtype=torch.float32).repeat(3, 1)  # class 9 ranks first, class 0 last
    assert class_scores(logits, [9, 9, 9]) == {"top1": 1.0, "top5": 1.0, "prob": pytest.approx(float(torch.softmax(logits[0], 0)[9]))}
    mixed = class_scores(logits, [9, 5, 3])  # ranks 0, 4, 6
    assert mixed["top1"] == pytest.approx(1 / 3)
    assert mixed["top5"] == pytest.approx(2 / 3)
    assert class_scores(logits, [None, None, None]) == {}
    assert class_scores(logits, [None, 0, None])["top1"] == 0.0


# --- unseen views --------------------------------------------------------------------------


def test_unseen_views_are_seeded_and_sized() -> None:
    img = power_law_noise(48, 1.0, batch=2)
    views = UnseenViews()
    a = views(img, torch.Generator().manual_seed(3), 64)
    b = views(img, torch.Generator().manual_seed(3), 64)
    c = views(img, torch.Generator().manual_seed(4), 64)
    assert a.shape == (2, 3, 64, 64)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_unseen_view_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="view_crop"):
        UnseenViews(crop=(0.9, 0.5))
    with pytest.raises(ConfigError, match="view_blur"):
        UnseenViews(blur=(-1.0, 1.0))
    with pytest.raises(ConfigError, match="metrics.views"):
        MetricsCallback(views=-1)


def _photo(name: str, size: int = 128) -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    x = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float().div(255)[None]
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def test_a_natural_photo_keeps_its_class_under_unseen_views(lite0: FeatureModel) -> None:
    # The views must degrade adversarial patterns, not photos: an espresso photo stays espresso.
    scores = view_metrics(lite0, class_logit(967), _photo("coffee"), UnseenViews(), 6, torch.Generator().manual_seed(0))
    assert scores["top1"] >= 0.85
    assert scores["top5"] == 1.0
    assert scores["objective"] > 5.0
    assert float(spectral_slope(_photo("coffee"))) < -2.0
    assert float(high_frequency_share(_photo("coffee"))) < 0.05


# --- the callback --------------------------------------------------------------------------


def test_callback_adds_metrics_that_the_writer_records(lite0_64: FeatureModel, tmp_path) -> None:
    metrics = MetricsCallback(views=2, eval_model=lite0_64)
    result = render(
        lite0_64,
        class_logit(967),
        param=PixelImage(32, generator=torch.Generator().manual_seed(0)),
        transforms=[Resize(lite0_64.input_size)],
        steps=3,
        callbacks=[metrics, RunWriter(tmp_path)],
        device="cpu",
    )
    final = json.loads((tmp_path / "result.json").read_text())["final"]
    for key in ("objective_clean", "hf_share", "spectral_slope", "tv", "steps_to_90", "robust/objective", "robust/prob", "clean/top1", "transfer/top5"):
        assert key in final, key
        assert final[key] == pytest.approx(result.final[key])
    # With no transform but the resize, the loop's objective is the untransformed one.
    assert final["objective_clean"] == pytest.approx(final["objective"], rel=1e-4)
    # The "independent" model here is the source model itself on the clean image.
    assert final["transfer/prob"] == pytest.approx(final["clean/prob"], rel=1e-4)
    assert 0.0 <= final["robust/prob"] <= 1.0
    assert 0.0 <= final["steps_to_90"] <= 3


def test_unit_objective_gets_robust_objective_but_no_class_scores(lite0_64: FeatureModel) -> None:
    metrics = MetricsCallback(views=2)
    result = render(lite0_64, channel("blocks.2", 1), param=PixelImage(32), steps=2, callbacks=[metrics], device="cpu")
    assert "robust/objective" in result.final
    assert not any(k.startswith(("robust/top", "robust/prob", "clean/", "transfer/")) for k in result.final)


def test_eval_model_with_too_few_classes_is_skipped_with_a_warning(lite0_64: FeatureModel, caplog) -> None:
    tiny = FeatureModel(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10)), input_size=32, name="tiny", num_classes=10)
    metrics = MetricsCallback(views=0, eval_model=tiny)
    with caplog.at_level(logging.WARNING, logger="featviz"):
        result = render(lite0_64, class_logit(281), param=PixelImage(32), steps=1, callbacks=[metrics], device="cpu")
    assert "clean/top1" in result.final
    assert not any(k.startswith("transfer/") for k in result.final)
    assert "10 classes" in caplog.text


def test_build_with_missing_eval_weights_warns_and_goes_on(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with caplog.at_level(logging.WARNING, logger="featviz"):
        cb = build_metrics_callback({"eval_model": "googlenet", "views": 4})
    assert cb is not None and cb.eval_model is None and cb.views == 4
    assert "metrics.eval_weights" in caplog.text


def test_build_eval_model_and_errors() -> None:
    cb = build_metrics_callback({"eval_model": "efficientnet_lite0", "view_crop": [0.8, 0.8], "hf_cutoff": 0.3})
    assert cb is not None and cb.eval_model is not None and cb.view_transform.crop == (0.8, 0.8) and cb.hf_cutoff == 0.3
    assert build_metrics_callback({"enabled": False}) is None
    assert build_metrics_callback({"eval_model": None}).eval_model is None  # type: ignore[union-attr]
    with pytest.raises(UnknownModelError, match="resnet5"):
        build_metrics_callback({"eval_model": "resnet5"})
    with pytest.raises(ConfigError, match="hf_cutoff"):
        build_metrics_callback({"eval_model": None, "hf_cutoff": 2.0})
