"""Typed configs: a wrong type, an unknown key or an unknown choice is an error before any job
starts (Hydra's on the command line, a ConfigError for dicts), and booleans are real booleans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from featviz.app.build import build_run, validate
from featviz.app.config import compose, to_plain
from featviz.errors import ConfigError

SMALL = ["logger=none", "progress=false", "metrics.enabled=false", "param.size=32", "objective.layer=blocks.3", "steps=1"]


# (override, what the one line must say, whether the job got as far as writing result.json):
# type and choice errors stop in Hydra before any folder exists; range and finiteness
# errors stop the job before its first step, recorded as failed.
BAD_VALUES = [
    ("param.size=abc", "param.size", False),
    ("steps=1.5", "steps", False),
    ("batch=1.5", "batch", False),
    ("steps=abc", "steps", False),
    ("snapshots=[0,1.5]", "snapshots", False),
    ("snapshots=[0,../../escape]", "snapshots", False),
    ("param.value_range=soft", "param.value_range", False),
    ("param.bogus=1", "param.bogus", False),
    ("regularizer.diversity_kind=cosine", "regularizer.diversity_kind", False),
    ("logger.mode=sometimes", "logger.mode", False),
    ("objective.unit=x", "objective.unit", False),
    ("param.sd=nan", "featviz: error: param.sd=nan must be a finite number", True),
    ("transforms.rotate=nan", "featviz: error: transforms.rotate=nan must be a finite number", True),
    ("transforms.scale=[1,inf]", "featviz: error: transforms.scale=inf must be a finite number", True),
    ("optimizer.lr=inf", "featviz: error: optimizer.lr=inf must be a finite number", True),
    ("transforms.jitter=-3", "featviz: error: transforms.jitter=-3 must be >= 0", True),
    ("device=tpu", "featviz: error: device='tpu'", True),
    ("optimizer.schedule=linear", "optimizer.schedule", False),
    ("transforms.crops=-1", "featviz: error: transforms.crops=-1 must be >= 0", True),
    ("transforms.crop_size=[0.5,2]", "featviz: error: transforms.crop_size=2", True),
    ("model.redirected_relu=-4", "featviz: error: model.redirected_relu=-4 must be >= 0", True),
    ("regularizer.alpha=1", "featviz: error: regularizer.alpha acts on the alpha channel of param=rgba", True),
]


@pytest.mark.parametrize(("override", "message", "recorded"), BAD_VALUES, ids=[v[0] for v in BAD_VALUES])
def test_bad_values_fail_before_rendering(tmp_path: Path, override: str, message: str, recorded: bool) -> None:
    out = tmp_path / "run"
    proc = run_cli(*SMALL, override, f"hydra.run.dir={out}")
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    if recorded:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("featviz:")]
        assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
        assert json.loads((out / "result.json").read_text())["status"] == "failed"
    else:
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
