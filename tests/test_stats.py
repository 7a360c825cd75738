"""Known answers for the ablation statistics: a planted effect is found and covered, a null one is not
found more often than the stated rate, and the bootstrap is seeded."""

import json

import numpy as np
import pytest

from featviz.app.report import effects as E
from featviz.app.report.runs import load_runs
from featviz.stats import MIN_PAIRS, mean_ci, paired


def _sweep(folder, values, seeds, metric, steps=32):
    """A sweep folder as featviz leaves it: one result.json per (value, seed) job."""
    job = 0
    for v in values:
        for s in seeds:
            path = folder / str(job)
            path.mkdir(parents=True)
            final = {"hf_share": metric(v, s), "objective": 10.0 + s}
            config = {"steps": steps, "batch": 1, "transforms": {"crops": 0}}
            path.joinpath("result.json").write_text(json.dumps(
                {"status": "completed", "overrides": [f"regularizer.tv={v}", f"seed={s}"], "final": final, "config": config}))
            job += 1
    return folder


def test_a_planted_effect_is_covered_and_significant(tmp_path):
    rng = np.random.default_rng(3)
    seed_level = rng.normal(0, 1.0, 12)  # seeds differ a lot: pairing removes it
    noise = rng.normal(0, 0.05, (2, 12))
    folder = _sweep(tmp_path, ["0", "0.5"], range(12), lambda v, s: seed_level[s] - 0.3 * float(v) * 2 + noise[int(float(v) > 0), s])
    effects = E.compute(load_runs(folder))
    assert effects.factors == ["regularizer.tv"] and effects.replicates == ["seed"]
    (comp,) = [c for c in effects.comparisons if c.metric == "hf_share"]
    assert comp.baseline == "0" and comp.value == "0.5" and comp.result.diff.n == 12
    assert comp.result.diff.low <= -0.3 <= comp.result.diff.high
    assert comp.result.significant and comp.result.p_value < 0.01 and comp.result.note == ""
    arms = [effects.arm("regularizer.tv", v, "hf_share") for v in ("0", "0.5")]
    assert arms[0].high - arms[0].low > 5 * (comp.result.diff.high - comp.result.diff.low)  # unpaired arms are far wider


def test_a_null_effect_is_found_at_about_the_stated_rate():
    rng = np.random.default_rng(0)
    found = sum(paired(rng.normal(0, 1, 12), rng.normal(0, 1, 12), seed=i).significant for i in range(400))
    assert found / 400 <= 0.08  # the test's level is 0.05; the signed-rank test is exact here, so at most about that


def test_too_few_pairs_are_said_and_never_significant():
    result = paired([1.0, 2.0, 3.0], [2.0, 3.0, 4.5])
    assert result.diff.n == 3 and not result.significant and f">= {MIN_PAIRS}" in result.note
    assert result.pairs_needed is not None


def test_the_bootstrap_is_seeded():
    data = list(np.random.default_rng(1).normal(size=10))
    assert mean_ci(data, seed=7) == mean_ci(data, seed=7)
    assert mean_ci(data, seed=7) != mean_ci(data, seed=8)


def test_effects_files_for_a_paper(tmp_path):
    folder = _sweep(tmp_path / "sweep", ["0", "0.05", "0.5", "5"], range(6), lambda v, s: 1.0 / (1 + float(v)) + 0.01 * s)
    effects = E.compute(load_runs(folder))
    out = tmp_path / "paper"
    out.mkdir()
    written = E.write(effects, out, ("pdf", "svg"))
    assert (out / "effects_regularizer_tv.pdf").read_bytes().startswith(b"%PDF")
    assert (out / "effects_regularizer_tv.svg").is_file() and (out / "effects_compute.png").is_file()
    tex = (out / "effects_comparisons.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "0.05 vs 0" in tex
    assert "effects_comparisons.csv" in written.tables
    # the bytes do not depend on the date: writing again gives the same files
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    E.write(effects, out, ("pdf", "svg"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


@pytest.mark.parametrize("values, first", [({"0.5", "0", "10"}, "0"), ({"tv", "none", "blur"}, "none"), ({"b", "a"}, "a")])
def test_the_baseline_is_the_off_value(values, first):
    assert E.ordered(values)[0] == first
