"""Directions, neuron arithmetic, interpolation, alignment and the shared parameterization."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from featviz.app.build import build_run
from featviz.objectives.batch import Alignment, Interpolate
from featviz.objectives.directions import Direction, RandomDirection
from featviz.metrics.diversity import DiversityMetric
from featviz.errors import ConfigError, UnitOutOfRangeError
from featviz.models import build_model
from featviz.objectives.units import Channel
from featviz.objectives import build_objective
from featviz.params.fourier import SharedFFTImage
from featviz.params import build_param
from featviz.render import render

REPO = Path(__file__).resolve().parents[2]


def acts(b: int = 3, c: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"l": torch.randn(b, c, 4, 4, generator=g), "logits": torch.randn(b, 10, generator=g)}


def test_sparse_direction_is_neuron_arithmetic():
    a = acts()
    c2, c5 = Channel("l", 2)(a), Channel("l", 5)(a)
    assert torch.allclose(Direction("l", {2: 1.0})(a), c2, atol=1e-6)
    assert torch.allclose(Direction("l", {2: 1.0, 5: 0.5})(a), c2 + 0.5 * c5, atol=1e-6)
    dense = torch.tensor([0, 0, 1.0, 0, 0, 0.5])
    assert torch.allclose(Direction("l", dense)(a), c2 + 0.5 * c5, atol=1e-6)
    assert torch.allclose(Direction("logits", {3: 2.0})(a), 2 * a["logits"][:, 3])
    from_config = build_objective(kind="direction", layer="l", units=[2, [5, 0.25], [5, 0.25]])
    assert torch.allclose(from_config(a), c2 + 0.5 * c5, atol=1e-6)
    with pytest.raises(ConfigError, match=r"\[channel, weight\]"):
        build_objective(kind="direction", layer="l", units=[[1, 2, 3]])


def test_cossim_power_rewards_the_angle():
    v = torch.tensor([1.0, 0.0, 0.0])
    along = {"l": torch.tensor([3.0, 0.0, 0.0]).view(1, 3, 1, 1)}
    mixed = {"l": torch.tensor([3.0, 3.0, 0.0]).view(1, 3, 1, 1)}
    against = {"l": torch.tensor([-3.0, 1.0, 0.0]).view(1, 3, 1, 1)}
    assert float(Direction("l", v, cossim_pow=2)(along)) == pytest.approx(3.0, rel=1e-3)
    # Same projection (3), but at 45 degrees: times cos(45)^2 = 0.5.
    assert float(Direction("l", v, cossim_pow=2)(mixed)) == pytest.approx(1.5, rel=1e-3)
    assert float(Direction("l", v, cossim_pow=0)(mixed)) == pytest.approx(3.0)
    # A negative cosine is floored at 0.1 before the power.
    assert float(Direction("l", v, cossim_pow=1)(against)) == pytest.approx(-0.3, rel=1e-3)


def test_direction_validation():
    shapes = {"l": (6, 4, 4)}
    with pytest.raises(UnitOutOfRangeError, match=r"0\.\.5"):
        Direction("l", {6: 1.0}).validate(shapes, 1)
    with pytest.raises(ConfigError, match="6 channels"):
        Direction("l", [1.0, 2.0]).validate(shapes, 1)
    with pytest.raises(ConfigError, match="cossim_pow"):
        Direction("l", {0: 1.0}, cossim_pow=-1)
    with pytest.raises(ConfigError, match="exactly one"):
        build_objective(kind="direction", layer="l", vector=[1.0], units={0: 1.0})
    with pytest.raises(ConfigError, match="exactly one"):
        build_objective(kind="direction", layer="l", vector=None, units=None)


def test_random_direction_depends_on_its_seed_only():
    a, b, c = RandomDirection("l", 3), RandomDirection("l", 3), RandomDirection("l", 4)
    torch.manual_seed(123)  # the global RNG must not matter
    va = a.vector(64)
    torch.manual_seed(999)
    assert torch.equal(va, b.vector(64))
    assert not torch.allclose(va, c.vector(64))
    assert float(va.norm()) == pytest.approx(1.0)
    x = acts(2, 64)
    assert torch.allclose(a(x), torch.einsum("bchw,c->b", x["l"], va) / 16, atol=1e-5)


def test_interpolate_blends_from_a_to_b():
    a = acts(3)
    ca, cb = Channel("l", 0)(a), Channel("l", 1)(a)
    out = Interpolate(Channel("l", 0), Channel("l", 1))(a)
    expected = torch.stack([ca[0], 0.5 * ca[1] + 0.5 * cb[1], cb[2]])
    assert torch.allclose(out, expected, atol=1e-6)
    built = build_objective(kind="interpolate", a={"kind": "channel", "layer": "l", "unit": 0}, b={"kind": "channel", "layer": "l", "unit": 1})
    assert torch.allclose(built(a), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="batch >= 2"):
        built.validate({"l": (6, 4, 4)}, 1)
    with pytest.raises(ConfigError, match="objective.a"):
        build_objective(kind="interpolate", a={"kind": "channel", "layer": "l", "unit": 0})


def test_alignment_penalizes_neighbours_by_distance():
    base = torch.zeros(4, 2, 3, 3)
    assert torch.equal(Alignment("l")({"l": base}), torch.zeros(4))
    moved = base.clone()
    moved[1] += 1.0  # frame 1 differs by 1 everywhere from frames 0, 2 and 3
    score = Alignment("l", decay=2.0)({"l": moved})
    # frame 0: d=1 (vs 1) 1/2; frame 1: d=1 (vs 2) 1/2 + d=2 (vs 3) 1/4; frame 2, 3: nothing with 1 after them.
    assert torch.allclose(score, torch.tensor([-0.5, -0.75, 0.0, 0.0]))
    assert torch.allclose(Alignment("l", reach=1)({"l": moved}), torch.tensor([-0.5, -0.5, 0.0, 0.0]))
    with pytest.raises(ConfigError, match="batch >= 2"):
        Alignment("l").validate({}, 1)


def test_shared_fft_shares_and_blends_components():
    g = torch.Generator().manual_seed(0)
    p = SharedFFTImage(32, batch=5, sd=0.5, decorrelate=False, generator=g)
    out = p()
    assert out.shape == (5, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, SharedFFTImage(32, batch=5, sd=0.5, decorrelate=False, generator=torch.Generator().manual_seed(0))())
    with torch.no_grad():
        p.spectrum.zero_()
    frames = p()
    # Without the unique part, frames differ only through the blended components, which move
    # linearly from the first frame to the last: the middle frame is the midpoint pre-sigmoid.
    logit = torch.logit(frames)
    assert torch.allclose(logit[2], (logit[0] + logit[4]) / 2, atol=1e-4)
    assert not torch.allclose(logit[0], logit[4])
    with torch.no_grad():
        for b in p.blended:
            b.zero_()
    assert torch.allclose(p()[0], p()[4]) and p()[0].std() > 0  # the shared part is left
    with pytest.raises(ConfigError, match="factor"):
        SharedFFTImage(32, shared=[64])
    assert isinstance(build_param("shared_fft", size=16, batch=2), SharedFFTImage)


def test_interpolation_renders_with_shared_param_and_alignment(lite0):
    g = torch.Generator().manual_seed(0)
    param = SharedFFTImage(32, batch=3, generator=g)
    obj = Interpolate(Channel("blocks.3", 1), Channel("blocks.3", 7)) + 0.1 * Alignment("blocks.2")
    first = render(lite0, obj, param=param, steps=4, generator=g, device="cpu", log_every=4)
    assert first.images.shape == (3, 3, 32, 32)
    assert first.history[-1]["objective"] > first.history[0]["objective"]


def compose_config(overrides: list[str]) -> dict:
    """The Hydra config as the app composes it (``+experiment=`` works through the search-path plugin)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", *overrides], return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)  # type: ignore[return-value]


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The override list of every job the experiment's sweep would launch."""
    params = compose_config([f"+experiment={experiment}"])["hydra"]["sweeper"]["params"]
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return [list(job) for job in itertools.product(*([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed))]


def run_config(overrides: list[str]) -> dict:
    """A job's resolved config; BatchNorm folding is off because these tests build many configs on one model."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", "perf.fold_bn=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def own_lite0():
    """A model of this module's own: build_run applies the config's perf options to it in place."""
    return build_model("efficientnet_lite0", device="cpu")


@pytest.mark.parametrize(
    "overrides",
    [
        ["objective=direction", "objective.units=[3,[7,0.5]]"],
        ["objective=random_direction", "objective.seed=5", "objective.cossim_pow=1"],
        ["objective=interpolate", "param=shared_fft", "batch=3", "regularizer.alignment=0.1", "regularizer.alignment_layer=blocks.3"],
    ],
)
def test_config_groups_build_and_validate(overrides, own_lite0):
    cfg = run_config(["param.size=32", "transforms=none", "transforms.resize=false", "steps=1", *overrides])
    parts = build_run(cfg, model=own_lite0)
    render(parts.model, parts.objective, param=parts.param, transforms=parts.transforms, steps=1, generator=parts.generator, device="cpu")


EXPERIMENTS = ["diversity_facets", "negative_positive", "random_directions", "neuron_arithmetic", "interpolation"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sweeps_build_and_validate(name, own_lite0):
    """Every job of every experiment sweep composes, builds and validates on the model."""
    jobs = sweep_jobs(name)
    assert len(jobs) >= 2
    for job in jobs:
        cfg = run_config([f"+experiment={name}", *job])
        assert name in cfg["tags"]
        parts = build_run(cfg, model=own_lite0)
        shapes = parts.model.layer_shapes(64, sorted(parts.objective.layers))
        parts.objective.validate(shapes, cfg["batch"])
        assert parts.param().shape[0] == cfg["batch"]
        assert sum(isinstance(c, DiversityMetric) for c in parts.callbacks) == (1 if cfg["batch"] >= 2 else 0)


def test_neuron_arithmetic_sweep_is_a_then_b_then_both():
    objectives = [build_objective(**run_config(["+experiment=neuron_arithmetic", *job])["objective"]).name for job in sweep_jobs("neuron_arithmetic")]
    assert objectives == [
        "direction(blocks.10:1*3)",
        "direction(blocks.10:1*17)",
        "direction(blocks.10:1*3+1*17)",
        "direction(blocks.10:1*3+0.5*17)",
    ]
