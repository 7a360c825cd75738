"""Diversity terms, the diversity metric, and their wiring into the Hydra builder."""

from __future__ import annotations

import json

import pytest
import torch

from featviz.app.build import build_run
from featviz.metrics.diversity import DiversityMetric, feature_cossim
from featviz.objectives.batch import GramDiversity, StyleDiversity, gram_matrices, pairwise_cosine, style_distance
from featviz.app.build import with_batch_terms
from featviz.errors import ConfigError, UnknownLayerError
from featviz.objectives.units import Channel
from featviz.writer import RunWriter
from featviz.params.fourier import FFTImage
from featviz.render import render


def test_gram_matrix_is_channel_products_over_positions():
    act = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    g = gram_matrices(act)
    assert g.shape == (2, 3, 3)
    assert float(g[1, 0, 2]) == pytest.approx(float((act[1, 0] * act[1, 2]).sum()))
    assert torch.allclose(g, g.transpose(1, 2))
    assert gram_matrices(torch.ones(2, 4)).shape == (2, 4, 4)


def test_gram_diversity_measures_sameness():
    same = torch.rand(1, 4, 3, 3).repeat(3, 1, 1, 1)
    assert torch.allclose(GramDiversity("l")({"l": same}), torch.ones(3), atol=1e-5)
    # Disjoint channels: image 0 fires only channels 0-1, image 1 only 2-3 -> orthogonal Grams.
    apart = torch.zeros(2, 4, 3, 3)
    apart[0, :2] = 1.0
    apart[1, 2:] = 1.0
    assert torch.allclose(GramDiversity("l")({"l": apart}), torch.zeros(2), atol=1e-6)
    # Shifting a pattern in space leaves the Gram matrix (and the score) unchanged.
    pattern = torch.rand(1, 4, 5, 5)
    moved = torch.cat([pattern, pattern.roll(2, dims=3)])
    assert torch.allclose(GramDiversity("l")({"l": moved}), torch.ones(2), atol=1e-5)


def test_style_diversity_is_minus_gatys_style_loss():
    g = torch.Generator().manual_seed(0)
    act = torch.rand(3, 4, 2, 2, generator=g)
    grams = gram_matrices(act)
    d01 = 0.25 * float((((grams[0] - grams[1]) / 4) ** 2).mean())
    d02 = 0.25 * float((((grams[0] - grams[2]) / 4) ** 2).mean())
    assert float(style_distance(grams[0], grams[1], 4)) == pytest.approx(d01)
    assert float(StyleDiversity("l")({"l": act})[0]) == pytest.approx(-(d01 + d02) / 2, rel=1e-5)
    assert torch.allclose(StyleDiversity("l")({"l": act[:1].repeat(2, 1, 1, 1)}), torch.zeros(2))


def test_batch_terms_need_two_images():
    with pytest.raises(ConfigError, match="batch >= 2"):
        GramDiversity("l").validate({"l": (4, 3, 3)}, 1)
    with pytest.raises(ConfigError, match="batch >= 2"):
        (Channel("l", 0) - 10 * StyleDiversity("l")).validate({"l": (4, 3, 3)}, 1)


def test_feature_cossim():
    a = torch.rand(1, 5, 3, 3).repeat(4, 1, 1, 1)
    assert feature_cossim(a) == pytest.approx(1.0, abs=1e-6)
    b = torch.zeros(2, 2, 3, 3)
    b[0, 0], b[1, 1] = 1.0, 1.0
    assert feature_cossim(b) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(pairwise_cosine(torch.tensor([[1.0, 0.0], [-2.0, 0.0]])), torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))


def _render(lite0, weight: float, steps: int, callbacks=()):
    g = torch.Generator().manual_seed(0)
    obj = Channel("blocks.3", 5)
    if weight:
        obj = obj - weight * GramDiversity("blocks.3")
    return render(lite0, obj, param=FFTImage(32, batch=3, generator=g), steps=steps, generator=g, device="cpu", log_every=steps, callbacks=list(callbacks))


def test_diversity_term_makes_the_batch_less_alike(lite0):
    def gram_sameness(images: torch.Tensor) -> float:
        with torch.no_grad():
            return float(GramDiversity("blocks.3")(lite0(images, ["blocks.3"])).mean())

    plain = _render(lite0, 0.0, steps=8)
    diverse = _render(lite0, 30.0, steps=8)
    assert gram_sameness(diverse.images) < gram_sameness(plain.images) - 0.05


def test_metric_callback_is_recorded_by_the_writer(lite0, tmp_path):
    result = _render(lite0, 0.0, steps=1, callbacks=[DiversityMetric("blocks.3"), RunWriter(tmp_path)])
    with torch.no_grad():  # the run has no resize transform: measured at its own 32 px, as it was optimized
        act = lite0(result.images, ["blocks.3"])["blocks.3"]
    assert result.final["feature_cossim"] == pytest.approx(feature_cossim(act), abs=1e-5)
    assert result.final["diversity"] == pytest.approx(1 - result.final["feature_cossim"])
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["final"]["diversity"] == pytest.approx(result.final["diversity"])
    assert "objective_main" not in result.final
    with pytest.raises(UnknownLayerError):
        _render(lite0, 0.0, steps=1, callbacks=[DiversityMetric("blocks.99")])


def test_metric_scores_the_objective_without_the_batch_terms(lite0):
    main = Channel("blocks.3", 5)
    result = _render(lite0, 30.0, steps=1, callbacks=[DiversityMetric("blocks.3", main)])
    with torch.no_grad():  # at the run's own 32 px (no resize transform)
        acts = lite0(result.images, ["blocks.3"])
    assert result.final["objective_main"] == pytest.approx(float(main(acts).mean()), abs=1e-5)
    assert result.final["objective_main"] != pytest.approx(result.final["objective"], abs=1e-3)


def test_with_batch_terms_defaults_and_errors(lite0):
    main = Channel("blocks.4", 5) + Channel("blocks.2", 1)
    obj, callbacks = with_batch_terms(main, lite0, batch=4, diversity=50.0, alignment=0.5, alignment_layer="blocks.1")
    names = obj.name
    assert "gram_diversity(blocks.4)" in names and "alignment(blocks.1)" in names  # deepest layer by default
    assert [type(c) for c in callbacks] == [DiversityMetric] and callbacks[0].layer == "blocks.4" and callbacks[0].main is main
    same, none = with_batch_terms(main, lite0, batch=1)
    assert same is main and none == []
    plain, (metric,) = with_batch_terms(main, lite0, batch=3)
    assert plain is main and metric.main is None
    style, _ = with_batch_terms(main, lite0, batch=2, diversity=1.0, diversity_kind="style", diversity_layer="blocks.2")
    assert "style_diversity(blocks.2)" in style.name
    with pytest.raises(ConfigError, match="diversity_kind"):
        with_batch_terms(main, lite0, batch=2, diversity=1.0, diversity_kind="cosine")
    with pytest.raises(ConfigError, match="finite weight"):
        with_batch_terms(main, lite0, batch=2, diversity=-1.0)
    with pytest.raises(ConfigError, match="must be a number"):
        with_batch_terms(main, lite0, batch=2, alignment="lots")


def test_build_run_reads_the_regularizer_group(lite0):
    base = {
        "perf": {"fold_bn": False, "channels_last": False},  # leave the shared model as it is
        "seed": 0,
        "steps": 1,
        "batch": 2,
        "device": "cpu",
        "model": {"name": "efficientnet_lite0", "weights": "imagenet"},
        "objective": {"kind": "channel", "layer": "blocks.3", "unit": 1},
        "param": {"kind": "fft", "size": 32},
        "transforms": {"resize": False},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.05},
    }
    parts = build_run({**base, "regularizer": {"tv": 0.0, "diversity": 10.0, "diversity_layer": "blocks.2", "diversity_kind": "gram", "alignment": 0.0, "alignment_layer": None}}, model=lite0)
    assert "gram_diversity(blocks.2)" in parts.objective.name
    assert [c.layer for c in parts.callbacks] == ["blocks.2"]
    assert parts.regularizers == []
    single = build_run({**base, "batch": 1, "regularizer": {"diversity": 0.0}}, model=lite0)
    assert single.callbacks == [] and "diversity" not in single.objective.name
    with pytest.raises(ConfigError, match="batch >= 2"):
        bad = build_run({**base, "batch": 1, "regularizer": {"diversity": 10.0}}, model=lite0)
        render(bad.model, bad.objective, param=bad.param, transforms=bad.transforms, steps=1, device="cpu")
