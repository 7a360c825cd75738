"""The scorecard on known answers: an image against itself, noise against photos, a constant image.

The reference is scikit-image's 20 bundled sample photos (benchmarks/sample_reference.py);
the networks are the embedded EfficientNet-Lites at 64 px so each pass is cheap.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from featviz.metrics.features import cosine_matrix, frechet_distance, pooled_features
from featviz.metrics.reference import ReferenceSet
from featviz.metrics.scorecard import (
    divergence_layer,
    exemplars,
    image_objective,
    mis_accuracy,
    knn_cosine,
    path_layers,
    seed_stability,
)
from featviz.metrics.scorer import ReferenceScorer
from featviz.models import build_model
from featviz.objectives import channel, class_logit
from featviz.ops import gaussian_blur

pytest.importorskip("skimage")
sys.path.insert(0, str(REPO / "benchmarks"))
from sample_reference import write_reference  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceSet:
    root = tmp_path_factory.mktemp("reference")
    write_reference(root)
    return ReferenceSet.from_folder(root)


@pytest.fixture(scope="module")
def unit_model():
    return build_model("efficientnet_lite0", input_size=SIZE)


@pytest.fixture(scope="module")
def eval_model():
    return build_model("efficientnet_lite1", input_size=SIZE)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATVIZ_CACHE", str(tmp_path / "cache"))


def test_class_subfolders_are_labels(reference: ReferenceSet) -> None:
    assert len(reference) == 20
    assert sorted(p.name for i, p in enumerate(reference.paths) if reference.labels[i] == 281) == ["cat.png", "chelsea.png"]
    assert [reference.paths[i].name for i in reference.of_class(967)] == ["coffee.png"]
    assert reference.of_class(1) == []


def test_a_reference_photo_is_fully_plausible_against_itself(reference: ReferenceSet, eval_model) -> None:
    refs = reference.features(eval_model)
    photo = reference.images(SIZE, [3])
    assert float(knn_cosine(pooled_features(eval_model, photo), refs, k=1)[0]) == pytest.approx(1.0, abs=1e-6)


def test_noise_is_less_plausible_than_a_blurred_photo(reference: ReferenceSet, eval_model) -> None:
    refs = reference.features(eval_model)
    blurred = gaussian_blur(reference.images(SIZE, [0]), 1.5)
    noise = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    score = {name: float(knn_cosine(pooled_features(eval_model, img), refs)[0]) for name, img in (("blurred", blurred), ("noise", noise))}
    assert score["noise"] < score["blurred"] - 0.05, score


def test_features_are_cached_per_folder_and_model(reference: ReferenceSet, eval_model, unit_model, tmp_path: Path) -> None:
    first = reference.features(eval_model)
    files = list((tmp_path / "cache").rglob("*.pt"))
    assert len(files) == 1
    assert torch.equal(reference.features(eval_model), first)  # read back, not recomputed
    reference.features(unit_model)  # other weights: another entry
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2


def test_the_top_exemplar_itself_scores_perfectly(reference: ReferenceSet, unit_model, eval_model) -> None:
    """Visualization = the unit's only top exemplar: MIS 1, exemplar ratio 1, path similarity 1 at every layer."""
    scorer = ReferenceScorer(reference, quantile=0.05, path_layers=5)  # one top, one bottom exemplar
    objective = channel("blocks.6", 7)
    scores = torch.cat([objective(unit_model(reference.images(SIZE, [i]), ["blocks.6"])) for i in range(len(reference))])
    top, _ = exemplars(scores, 0.05)
    image = reference.images(SIZE, top)
    final = scorer.score(unit_model, objective, image, [None], eval_model)
    assert final["mis/accuracy"] == 1.0
    assert final["exemplar_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert final["path/similarity_min"] == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(final["path/divergence_layer"])  # it never leaves its exemplars' path


def test_a_constant_image_is_at_chance(reference: ReferenceSet, unit_model, eval_model) -> None:
    """A grey image tells nothing about a unit: over 32 units the observer is right about half the time.

    One batch of 32 grey images, image c for channel c (the batch path of the scorer)."""
    scorer = ReferenceScorer(reference, path_layers=2)
    units = sum((channel("blocks.6", c).batch(c) for c in range(1, 32)), channel("blocks.6", 0).batch(0))
    grey = torch.full((32, 3, SIZE, SIZE), 0.5)
    accuracy = scorer.score(unit_model, units, grey, [None] * 32, eval_model)["mis/accuracy"]
    assert 0.35 < accuracy < 0.65, accuracy


def test_mis_counts_ties_as_half() -> None:
    centre = torch.zeros(3)
    vis = torch.tensor([1.0, 0.0, 0.0])
    same = torch.tensor([[0.0, 1.0, 0.0]])
    assert mis_accuracy(vis, same, same, centre) == 0.5
    assert mis_accuracy(vis, torch.tensor([[1.0, 0.1, 0.0]]), same, centre) == 1.0
    assert mis_accuracy(vis, same, torch.tensor([[1.0, 0.1, 0.0]]), centre) == 0.0


def test_frechet_distance_known_values() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 4, generator=gen)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means 3 apart along one axis: FD = 9.
    assert frechet_distance(a, a + torch.tensor([3.0, 0, 0, 0])) == pytest.approx(9.0, rel=1e-6)
    # N(0, I) vs N(0, 4I) in 4-D: 4 * (1 + 4 - 2 * 2) = 4.
    b = torch.randn(200000, 4, generator=gen)
    assert frechet_distance(b, 2 * torch.randn(200000, 4, generator=gen)) == pytest.approx(4.0, rel=0.03)


def test_frechet_distance_small_sets_match_the_matrix_square_root() -> None:
    """Fewer samples than dimensions take the singular-value route: same value as sqrtm."""
    linalg = pytest.importorskip("scipy.linalg")
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 40, generator=gen).double(), (torch.randn(9, 40, generator=gen) + 0.3).double()
    cov_a, cov_b = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = float((a.mean(0) - b.mean(0)).pow(2).sum()) + cov_a.trace() + cov_b.trace() - 2 * root.trace()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_seed_stability_and_divergence() -> None:
    same = torch.ones(3, 5)
    assert seed_stability(same) == pytest.approx(1.0)
    assert seed_stability(torch.eye(4)) == pytest.approx(0.0)
    assert math.isnan(seed_stability(torch.ones(1, 5)))
    assert divergence_layer([0.9, 0.7, 0.4, 0.8], 0.5) == 2.0
    assert math.isnan(divergence_layer([0.9, 0.7], 0.5))
    assert cosine_matrix(torch.eye(2), torch.eye(2)).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_image_objective_keeps_each_images_unit_terms() -> None:
    both = channel("blocks.3", 1).batch(0) + 2.0 * channel("blocks.5", 4).batch(1) + class_logit(3)
    first, second = image_objective(both, 0), image_objective(both, 1)
    assert first is not None and first.layers == frozenset({"blocks.3"})
    assert second is not None and second.layers == frozenset({"blocks.5"}) and second.factor == 2.0
    assert image_objective(class_logit(3), 0) is None


def test_path_ends_at_the_unit_and_follows_the_network(unit_model) -> None:
    path = path_layers(unit_model, "blocks.6", 5)
    assert len(path) == 5 and path[-1] == "blocks.6" and path[0] == "stem_act"
    names = unit_model.layer_names
    assert [names.index(p) for p in path] == sorted(names.index(p) for p in path)
