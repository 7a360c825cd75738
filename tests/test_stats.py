"""Known answers for the ablation statistics: a planted effect is found and covered at n = 6, the
interval agrees with its test, a null table is starred no more often than the correction states,
and "pairs needed" comes from the test's own distribution."""

import json

import numpy as np
import pytest

from featviz.app.report import effects as E
from featviz.app.report.runs import load_runs
from scipy import stats as sps

from featviz.stats import MIN_PAIRS, adjust, bh, holm, mean_ci, paired, pairs_needed


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
    found = sum(paired(rng.normal(0, 1, 12), rng.normal(0, 1, 12)).significant for i in range(1000))
    assert found / 1000 <= 0.065  # one comparison alone: the t-test's level 0.05, plus 2 standard errors


def test_too_few_pairs_are_said_and_never_significant():
    result = paired([1.0, 2.0, 3.0], [2.0, 3.0, 4.5])
    assert result.diff.n == 3 and not result.significant and f">= {MIN_PAIRS}" in result.note
    assert result.pairs_needed is not None


def test_the_interval_is_deterministic_and_t_based():
    data = list(np.random.default_rng(1).normal(size=10))
    assert mean_ci(data, seed=7) == mean_ci(data, seed=8)  # no resampling: the same data give the same interval
    ci = mean_ci(data)
    half = sps.t.ppf(0.975, 9) * np.std(data, ddof=1) / np.sqrt(10)
    assert ci.high - ci.mean == pytest.approx(half) and ci.mean - ci.low == pytest.approx(half)


CASES = 2000


@pytest.mark.parametrize("noise", ["normal", "skewed"])
def test_six_pair_intervals_cover_a_known_effect_and_agree_with_their_test(noise):
    """2000 simulated 6-pair ablations with a known effect of 0.3 (seed levels sd 1, noise sd 0.4):
    the 95 % interval covers 0.3 in >= 93 %, and p < 0.05 exactly when the interval excludes 0."""
    rng = np.random.default_rng(11)
    level = rng.normal(0, 1.0, (CASES, 6))
    if noise == "normal":
        e = rng.normal(0, 0.4, (2, CASES, 6))
    else:  # lognormal noise, centred: differences of skewed errors
        e = (rng.lognormal(0, 0.6, (2, CASES, 6)) - np.exp(0.18)) * 0.4
    a, b = level + e[0], level + 0.3 + e[1]
    covered = agree = 0
    for i in range(CASES):
        r = paired(a[i], b[i])
        covered += r.diff.low <= 0.3 <= r.diff.high
        agree += (r.p_value < 0.05) == (r.diff.low > 0 or r.diff.high < 0)
    assert agree == CASES
    assert covered / CASES >= 0.93, covered / CASES


def test_a_null_table_of_36_rows_is_starred_at_the_stated_rates():
    """1000 tables of 36 null comparisons at 6 pairs: Holm keeps the share of tables with any star
    near 5 % (family-wise), BH keeps the false discovery rate (here = that share) at 5 %; raw p would star ~5 % of rows."""
    rng = np.random.default_rng(5)
    tables, rows = 1000, 36
    d = rng.normal(0, 1, (tables, rows, 6))
    p = sps.ttest_1samp(d, 0, axis=-1).pvalue
    any_holm = np.mean([(holm(t) < 0.05).any() for t in p])
    any_bh = np.mean([(bh(t) < 0.05).any() for t in p])
    raw_rows = np.mean(p < 0.05)
    assert any_holm <= 0.065 and any_bh <= 0.065, (any_holm, any_bh)  # 0.05 + 2 standard errors of 1000 tables
    assert 0.04 <= raw_rows <= 0.06  # uncorrected, 36 rows give ~1.8 stars per table


def test_holm_and_bh_match_their_definitions_and_adjust_sets_both():
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bh(p) == pytest.approx(sps.false_discovery_control(p))
    results = adjust([paired(np.zeros(6), np.arange(6) * 0.1 + s) for s in (0.0, 1.0)])
    assert all(np.isfinite(r.p_adjusted) and r.p_adjusted >= r.p_value for r in results)


def test_pairs_needed_is_the_noncentral_t_power_and_never_below_what_the_check_reaches():
    n = pairs_needed(0.5)
    crit = sps.t.ppf(0.975, n - 1)
    power = sps.nct.sf(crit, n - 1, 0.5 * np.sqrt(n)) + sps.nct.cdf(-crit, n - 1, 0.5 * np.sqrt(n))
    crit1 = sps.t.ppf(0.975, n - 2)
    below = sps.nct.sf(crit1, n - 2, 0.5 * np.sqrt(n - 1)) + sps.nct.cdf(-crit1, n - 2, 0.5 * np.sqrt(n - 1))
    assert power >= 0.8 > below and n == 34
    assert pairs_needed(5.0) == MIN_PAIRS and pairs_needed(0.0) is None


def test_effects_files_for_a_paper(tmp_path):
    folder = _sweep(tmp_path / "sweep", ["0", "0.05", "0.5", "5"], range(6), lambda v, s: 1.0 / (1 + float(v)) + 0.01 * s)
    effects = E.compute(load_runs(folder))
    out = tmp_path / "paper"
    out.mkdir()
    written = E.write(effects, out, ("pdf", "svg"))
    assert (out / "effects_regularizer_tv.pdf").read_bytes().startswith(b"%PDF")
    assert (out / "effects_regularizer_tv.svg").is_file() and (out / "effects_differences_regularizer_tv.pdf").is_file()
    assert not (out / "effects_compute.png").exists() and "forward_passes" in effects.dropped  # every run made the same passes
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


def test_timing_rows_are_apart_never_starred_and_constant_metrics_dropped(tmp_path):
    """wall_time_s moving with the setting is reported, not starred, and not in the correction's family."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "sweep"
    job = 0
    for v in ("0", "1"):
        for s in range(6):
            path = folder / str(job)
            path.mkdir(parents=True)
            final = {"hf_share": 0.5 - 0.1 * float(v) + rng.normal(0, 0.01), "wall_time_s": 10.0 + 50 * float(v) + rng.normal(0, 0.1), "tv": 1.0}
            path.joinpath("result.json").write_text(json.dumps({"status": "completed", "overrides": [f"regularizer.tv={v}", f"seed={s}"], "final": final,
                                                                "config": {"steps": 8 * (1 + int(v)), "batch": 1, "transforms": {"crops": 0}}}))
            job += 1
    effects = E.compute(load_runs(folder))
    assert "tv" in effects.dropped and "tv" not in effects.metrics
    by = {c.metric: c for c in effects.comparisons}
    assert by["hf_share"].significant and not by["wall_time_s"].significant and not by["forward_passes"].significant
    assert by["hf_share"].result.p_adjusted == pytest.approx(by["hf_share"].result.p_value)  # a family of one quality row
    rows = E.comparison_rows(effects)
    assert [r["kind"] for r in rows] == ["quality", "compute", "compute"] and "not starred" in rows[1]["note"]
    out = tmp_path / "out"
    out.mkdir()
    E.write(effects, out)
    assert (out / "effects_compute.png").is_file()  # the steps differ: compute varies
    assert "family: the 1 quality comparisons" in (out / "effects_comparisons.md").read_text()


def test_every_metric_gets_a_panel_over_several_figures(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "sweep"
    for job, (v, s) in enumerate((v, s) for v in ("0", "1") for s in range(6)):
        path = folder / str(job)
        path.mkdir(parents=True)
        final = {f"transfer/m{i}": float(v) * i + rng.normal() for i in range(11)}
        path.joinpath("result.json").write_text(json.dumps({"status": "completed", "overrides": [f"regularizer.tv={v}", f"seed={s}"], "final": final}))
    effects = E.compute(load_runs(folder))
    assert len(effects.metrics) == 11
    names = [n for _, n in E.write(effects, tmp_path).figures]
    assert {"effects_regularizer_tv.png", "effects_regularizer_tv_2.png", "effects_differences_regularizer_tv_2.png"} <= set(names)


@pytest.mark.parametrize("layout", ["by_setting", "by_seed"])
def test_a_setting_run_in_its_own_pack_is_flagged_confounded_and_never_starred(tmp_path, layout):
    """Packs cut in job order (tv=0 in pack 0, tv=1 in pack 1) confound the setting with the pack; packs of
    seeds (each holding both arms) pair every seed inside one pack."""
    folder = tmp_path / "sweep"
    for job, (v, s) in enumerate((v, s) for v in ("0", "1") for s in range(6)):
        path = folder / str(job)
        path.mkdir(parents=True)
        pack = int(v) if layout == "by_setting" else s // 3
        path.joinpath("result.json").write_text(json.dumps({"status": "completed", "overrides": [f"regularizer.tv={v}", f"seed={s}"],
                                                            "pack": {"id": pack, "size": 6}, "final": {"hf_share": 0.5 - 0.1 * float(v) + 0.01 * s * s + 0.003 * ((job * 7) % 5)}}))
    effects = E.compute(load_runs(folder))
    (comp,) = effects.comparisons
    row = E.comparison_rows(effects)[0]
    if layout == "by_setting":
        assert comp.confounded and not comp.significant and comp.pairs_in_pack == 0 and "confounded with the pack" in row["note"]
    else:
        assert not comp.confounded and comp.significant and comp.pairs_in_pack == 6 and row["pairs_in_pack"] == "6"
