"""Every experiment config composes, every point of its sweep builds, and a tiny one runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from featviz.app.build import build_run
from featviz.params.fourier import FFTImage
from featviz.params.pixel import PixelImage
from featviz.regularizers.preconditioners import GradientBlur, GradientNormalize, ParamBlur

STUDIES = REPO / "experiments"
EXPERIMENTS = REPO / "conf" / "experiment"  # the pieces studies compose: family/, objective/, stack/, ...
ALL = sorted(p.name for p in STUDIES.iterdir() if (p / "config.yaml").is_file())
# The figures of the regularization-spectrum issue; the others belong to other features.
SPECTRUM = ["decorrelated", "frequency", "logits_vs_probs", "lr_noise", "naive", "objectives", "robustness", "spectrum"]
FAMILIES = sorted(p.stem for p in (EXPERIMENTS / "family").glob("*.yaml"))


# build_run must not fold BatchNorms into (or re-layout) the shared session model.
NO_PERF = ["perf.fold_bn=false", "perf.channels_last=false"]


#: Studies composed onto another primary config than the render's (``featviz microscope +experiment=microscope``).
PRIMARY = {"microscope": "microscope"}


def compose_cfg(*overrides: str, hydra: bool = False, primary: str = "config"):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(primary, overrides=["logger=none", *overrides], return_hydra_config=hydra)


def resolved(*overrides: str, primary: str = "config") -> dict:
    return OmegaConf.to_container(compose_cfg(*overrides, primary=primary), resolve=True, enum_to_str=True)  # type: ignore[return-value]


def sweep_axes(experiment: str) -> list[list[str]]:
    """The experiment's sweep axes, each a list of overrides (glob(*) expanded from the folder)."""
    params = compose_cfg(f"+experiment={experiment}", hydra=True).hydra.sweeper.params or {}
    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        if str(value).startswith("glob("):
            group = key.lstrip("+").removeprefix("experiment/")
            values = sorted(p.stem for p in (EXPERIMENTS / group).glob("*.yaml"))
        else:
            values = list(parser.parse_override(f"{key}={value}").sweep_string_iterator())
        axes.append([f"{key}={v}" for v in values])
    return axes


def is_group_choice(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+")
    return "/" in key or (REPO / "conf" / key).is_dir()


def sweep_configs(experiment: str):
    """Yield (overrides, resolved config) for every job of the sweep.

    Composing is the slow part, so each combination of config-group choices is composed
    once and the plain value axes (e.g. spectrum.level) are applied to a copy.
    """
    axes = sweep_axes(experiment)
    groups = [a for a in axes if is_group_choice(a[0])]
    values = [a for a in axes if not is_group_choice(a[0])]
    for choice in itertools.product(*groups):
        base = compose_cfg(f"+experiment={experiment}", *NO_PERF, *choice)
        for point in itertools.product(*values):
            cfg = base.copy()
            for override in point:
                key, value = override.split("=", 1)
                OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
            yield [*choice, *point], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def test_the_figures_and_families_are_all_there() -> None:
    assert set(SPECTRUM) <= set(ALL)
    assert {
        "bilateral", "blur", "decorrelated", "grad_blur", "grad_normalize", "jitter", "l1",
        "none", "param_blur", "rotate", "scale", "standard", "tv",
    } <= set(FAMILIES)


@pytest.mark.parametrize("name", ALL)
def test_every_experiment_composes(name: str) -> None:
    cfg = resolved(f"+experiment={name}", primary=PRIMARY.get(name, "config"))  # every interpolation resolves
    assert cfg["model"]["name"]


@pytest.mark.parametrize("name", SPECTRUM)
def test_every_sweep_point_builds(name: str, lite0) -> None:
    jobs = 0
    for overrides, cfg in sweep_configs(name):
        assert cfg["model"]["name"] == "efficientnet_lite0", overrides
        parts = build_run(cfg, model=lite0)
        lite0.check_layers(parts.objective.layers)
        jobs += 1
    expected = {"spectrum": 3 * len(FAMILIES), "objectives": 5, "frequency": 5, "robustness": 4, "decorrelated": 4, "lr_noise": 3}
    assert jobs == expected.get(name, jobs)


def test_spectrum_levels_reach_the_right_knobs(lite0) -> None:
    def parts(family: str, level: str):
        cfg = resolved("+experiment=spectrum", f"experiment/family={family}", f"spectrum.level={level}", *NO_PERF)
        return build_run(cfg, model=lite0)

    assert [r.weight for r in parts("tv", "strong").regularizers] == [4.8]  # weight 1 = strong (docs/spectrum.md)
    assert parts("none", "weak").regularizers == [] and parts("none", "weak").callbacks == []
    assert isinstance(parts("none", "weak").param, PixelImage)
    fft = parts("decorrelated", "weak").param
    assert isinstance(fft, FFTImage) and fft.decorrelate
    assert [type(c) for c in parts("grad_blur", "medium").callbacks] == [GradientBlur]
    assert parts("grad_normalize", "strong").callbacks[0].levels == 6
    assert isinstance(parts("grad_normalize", "strong").callbacks[0], GradientNormalize)
    blur = parts("param_blur", "weak").callbacks[0]
    assert isinstance(blur, ParamBlur) and (blur.sigma, blur.every) == (0.3, 4)
    stages = [type(t).__name__ for t in parts("standard", "medium").transforms.transforms]
    assert stages == ["Pad", "Jitter", "RandomScale", "RandomRotate", "Jitter"]


def test_unknown_experiment_lists_the_options() -> None:
    with pytest.raises(MissingConfigException, match="experiment/nope") as info:
        compose_cfg("+experiment=nope")
    assert "spectrum" in str(info.value) and "experiment_base" not in str(info.value)


def test_a_tiny_sweep_runs_end_to_end(tmp_path: Path) -> None:
    proc = run_cli(
        "-m", "+experiment=spectrum", "experiment/family=none,grad_blur", "spectrum.level=weak", "logger=none",
        "metrics.enabled=false", "perf.fold_bn=false",
        "steps=2", "param.size=32", "snapshots=[0,2]", "progress=false", f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads((tmp_path / str(i) / "result.json").read_text()) for i in range(2)]
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert [r["config"]["spectrum"]["family"] for r in results] == ["none", "grad_blur"]
    assert results[1]["config"]["param"]["grad_blur_sigma"] == 0.5
    assert (tmp_path / "1" / "snapshots" / "step_2.png").is_file()
    # Same seed, same start: only the app-attached gradient hook can make the images differ.
    assert (tmp_path / "0" / "snapshots" / "step_0.png").read_bytes() == (tmp_path / "1" / "snapshots" / "step_0.png").read_bytes()
    assert (tmp_path / "0" / "final.png").read_bytes() != (tmp_path / "1" / "final.png").read_bytes()
