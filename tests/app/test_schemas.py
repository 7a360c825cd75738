"""Typed configs: a wrong type, an unknown key or an unknown choice is an error before any job
starts (Hydra's on the command line, a ConfigError for dicts), and booleans are real booleans."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from featviz.app.build import build_run, validate
from featviz.app.config import compose, to_plain
from featviz.errors import ConfigError

SMALL = ["logger=none", "progress=false", "metrics.enabled=false", "param.size=32", "objective.layer=blocks.3", "steps=1"]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("param.size=abc", "param.size"),
        ("steps=1.5", "steps"),
        ("batch=1.5", "batch"),
        ("steps=abc", "steps"),
        ("snapshots=[0,1.5]", "snapshots"),
        ("snapshots=[0,../../escape]", "snapshots"),
        ("param.value_range=soft", "param.value_range"),
        ("param.bogus=1", "param.bogus"),
        ("regularizer.diversity_kind=cosine", "regularizer.diversity_kind"),
        ("logger.mode=sometimes", "logger.mode"),
        ("objective.unit=x", "objective.unit"),
    ],
)
def test_bad_values_fail_before_any_job_starts(tmp_path: Path, override: str, key: str) -> None:
    out = tmp_path / "run"
    proc = run_cli(*SMALL, override, f"hydra.run.dir={out}")
    assert proc.returncode != 0
    assert key.split(".")[-1] in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()  # refused before Hydra made the run folder


def test_booleans_are_real_booleans() -> None:
    cfg = to_plain(compose(["objective.negate=no", "param=pixel", "param.decorrelate=off", "perf.fold_bn=0"]))
    assert cfg["objective"]["negate"] is False and cfg["param"]["decorrelate"] is False and cfg["perf"]["fold_bn"] is False
    cfg = to_plain(compose(["objective.negate=yes"]))
    assert cfg["objective"]["negate"] is True


def test_each_param_and_objective_option_is_typed_by_its_own_schema() -> None:
    with pytest.raises(Exception, match="decay"):
        compose(["param=pixel", "param.decay=2"])  # only the Fourier parameterizations have a decay
    with pytest.raises(Exception, match="unit"):
        compose(["objective=layer", "objective.unit=3"])  # DeepDream has no unit


def test_dicts_get_the_same_checks(lite0) -> None:
    base = to_plain(compose(SMALL))
    assert validate(base)["param"]["kind"] == "fft"
    with pytest.raises(ConfigError, match="param.size"):
        build_run({**base, "param": {**base["param"], "size": "abc"}}, model=lite0)
    with pytest.raises(ConfigError, match="keys are"):
        build_run({**base, "perf": {"fold_batchnorm": True}}, model=lite0)
    with pytest.raises(ConfigError, match="param.kind"):
        build_run({**base, "param": {"kind": "fourier"}}, model=lite0)


@pytest.mark.parametrize(
    ("target", "message"),
    [("os.system", "not a torch.optim.Optimizer"), ("torch.optim.LBFGS", "closure"), ("torch.optim.Nope", "not importable")],
)
def test_only_torch_optimizers(lite0, target: str, message: str) -> None:
    base = to_plain(compose(SMALL))
    with pytest.raises(ConfigError, match=message):
        build_run({**base, "optimizer": {**base["optimizer"], "_target_": target}}, model=lite0)
