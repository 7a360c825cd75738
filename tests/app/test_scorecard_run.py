"""The scorecard through the app: every key in result.json's final and in the W&B summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from test_tracking import final_state, only_run_dir

pytest.importorskip("skimage")
sys.path.insert(0, str(REPO / "benchmarks"))
from sample_reference import write_reference  # noqa: E402

TINY = ["progress=false", "param.size=48", "steps=3", "metrics.views=2", "metrics.path_layers=4"]
UNIT = ["objective=channel", "objective.layer=blocks.6", "objective.unit=3"]
CLASS = ["objective=class_logit", "objective.unit=281"]


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        (CLASS, ["transfer/top1", "transfer/top5", "transfer/prob", "transfer/view_top1", "plausibility/knn_cos", "plausibility/fd"]),
        (UNIT, ["plausibility/knn_cos", "exemplar_ratio", "mis/accuracy", "path/similarity_min", "path/divergence_layer"]),
    ],
    ids=["class", "unit"],
)
def test_scorecard_keys_reach_result_and_wandb(tmp_path: Path, objective: list[str], expected: list[str]) -> None:
    reference = tmp_path / "reference"
    write_reference(reference)
    out = tmp_path / "run"
    proc = run_cli(*TINY, *objective, f"metrics.reference={reference}", f"hydra.run.dir={out}", env={"FEATVIZ_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((out / "result.json").read_text())["final"]
    summary = final_state(only_run_dir(out))["summary"]
    for key in expected:
        assert key in final, (key, sorted(final))
        assert f"final/{key}" in summary or key in summary, (key, sorted(summary))
    assert 0 <= final.get("mis/accuracy", 0.5) <= 1 and -1 <= final["plausibility/knn_cos"] <= 1
    if objective is UNIT:
        assert "transfer/top1" not in final  # a unit has no class to transfer
