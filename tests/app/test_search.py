"""+experiment=search: Optuna proposes, each trial renders its units as one pack, the best becomes a preset."""

import json
import math

import pytest
import yaml

from conftest import run_cli
from featviz.app.search import score


def test_a_search_scores_trials_over_their_units_and_writes_the_best_as_a_preset(tmp_path):
    sweep, presets = tmp_path / "search", tmp_path / "conf" / "preset"
    proc = run_cli("-m", "+experiment=search", "steps=3", "search.units=[281,947]", "hydra.sweeper.n_trials=3", "threads=1",
                   "metrics.views=1", "search.preset=mine", f"search.preset_dir={presets}", f"hydra.sweep.dir={sweep}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep of 3 jobs: 3 completed" in proc.stdout  # trials, not their 6 unit folders as well
    trials = [json.loads((sweep / str(n) / "result.json").read_text()) for n in range(3)]
    for trial in trials:
        final = trial["final"]
        assert trial["status"] == "completed" and final["search/units_done"] == 2
        units = [json.loads((sweep / str(trials.index(trial)) / f"unit_{u}" / "result.json").read_text()) for u in (281, 947)]
        assert all(u["pack"] == {"id": 0, "size": 2} for u in units)
        assert final["transfer/prob"] == pytest.approx(sum(u["final"]["transfer/prob"] for u in units) / 2)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(t["final"]["search/score"] for t in trials)
    preset = (presets / "mine.yaml").read_text()
    assert preset.startswith("# @package _global_") and "override /optimizer: nadam" in preset
    shown = run_cli(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "preset=mine", "--cfg", "job", "--package", "optimizer")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["lr"] == pytest.approx(best["best_params"]["optimizer.lr"])


def test_the_score_subtracts_the_relative_violation_of_each_constraint():
    search = {"metric": "transfer/prob", "at_most": {"hf_share": 0.05}, "at_least": {"transfer/top1": 0.5}, "penalty": 2.0}
    assert score({"transfer/prob": 0.8, "hf_share": 0.04, "transfer/top1": 0.75}, search) == (0.8, True)
    value, feasible = score({"transfer/prob": 0.8, "hf_share": 0.06, "transfer/top1": 0.25}, search)
    assert not feasible and value == pytest.approx(0.8 - 2.0 * (0.2 + 0.5))
    minimized, _ = score({"tv": 1.0, "hf_share": 0.1}, {"metric": "tv", "direction": "minimize", "at_most": {"hf_share": 0.05}})
    assert minimized == pytest.approx(2.0)
    assert math.isnan(score({}, {"metric": "transfer/prob"})[0])


def test_a_trials_unit_folders_are_not_counted_as_jobs_of_the_sweep(tmp_path):
    """3 trials of 2 units leave 9 result.json files; the summary counts the 3 jobs."""
    from featviz.app.sweep_summary import headline, summarize
    from featviz.images import save_json

    for trial in range(3):
        overrides = [f"optimizer.lr={trial}"]
        (tmp_path / str(trial) / ".hydra").mkdir(parents=True)
        (tmp_path / str(trial) / ".hydra" / "overrides.yaml").write_text(f"- {overrides[0]}\n")
        save_json({"status": "completed", "overrides": overrides, "final": {"search/score": 0.1}}, tmp_path / str(trial) / "result.json")
        for unit in (281, 947):
            save_json({"status": "completed", "overrides": [*overrides, f"objective.unit={unit}"], "pack": {"id": 0, "size": 2}, "final": {}},
                      tmp_path / str(trial) / f"unit_{unit}" / "result.json")
    summary = summarize(tmp_path)
    assert [j["job"] for j in summary["jobs"]] == ["0", "1", "2"] and summary["packs"] == {}
    assert headline(summary) == "sweep of 3 jobs: 3 completed"

