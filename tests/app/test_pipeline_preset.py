"""preset=best and the pipeline sweep that chose it: every rung composes and builds; the preset runs from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featviz.app.build import build_run
from featviz.schedules import LRSchedule, RedirectedReLU
from featviz.transforms import RandomCrops

RUNGS = sorted(p.stem for p in (REPO / "conf" / "experiment" / "technique").glob("*.yaml"))


def _cfg(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", "perf.fold_bn=false", "perf.channels_last=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def _kinds(parts) -> set[type]:  # type: ignore[no-untyped-def]
    return {type(c) for c in parts.callbacks} | {type(t) for t in parts.transforms.transforms}


def test_the_preset_sets_the_pipeline_and_the_command_line_still_wins(lite0) -> None:
    cfg = _cfg("preset=best", "objective=class_logit")
    assert {LRSchedule, RedirectedReLU, RandomCrops} <= _kinds(build_run(cfg, model=lite0))
    assert cfg["optimizer"]["_target_"] == "torch.optim.NAdam" and cfg["steps"] == 128 and cfg["param"]["kind"] == "maco_vivid"
    assert _cfg("preset=best", "steps=9", "optimizer=adam")["steps"] == 9
    assert _cfg("preset=best", "optimizer=adam")["optimizer"]["_target_"] == "torch.optim.Adam"


@pytest.mark.parametrize("rung", RUNGS)
def test_every_rung_of_the_pipeline_sweep_builds(rung: str, lite0) -> None:
    cfg = _cfg("+experiment=pipeline", f"experiment/technique={rung}", "objective.unit=417")
    parts = build_run(cfg, model=lite0)
    assert cfg["pipeline"]["technique"] == rung and "logits" in parts.objective.layers
    assert (RandomCrops in _kinds(parts)) == (rung not in ("default", "maco_only"))


def test_the_preset_renders_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("preset=best", "objective=class_logit", "param.size=32", "steps=3", "model.redirected_relu=2", "transforms.crops=2",
                   "metrics.enabled=false", "logger=none", "progress=false", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] < lrs[-2]  # the warm-up: the first rates rise
