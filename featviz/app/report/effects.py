"""The Effects section of a report: each swept setting's effect on every metric, with intervals and paired tests.

A sweep is run to support a claim about a setting, so for each swept key that is a *setting*
(not a replicate: seed, unit, class) this gives:

* every metric against the key's values, averaged over everything else the sweep varies,
  with a bootstrap 95 % interval (:func:`featviz.stats.mean_ci`): a line with an error band for
  numbers (log x when the values span two decades or more), points with error bars otherwise;
* each value against the key's first value (its baseline: the smallest number, e.g. weight 0),
  *paired* over the runs that agree on every other swept key (the same seed, unit, class and
  other settings): the mean difference, its interval, the Wilcoxon signed-rank p, Cohen's d_z,
  n, the pairs this spread would need, and a note when n cannot tell (:func:`featviz.stats.paired`);
* a heatmap of each metric over the first two settings, when a sweep varies two or more;
* quality at equal compute: each metric against the forward passes a run made
  (steps x views per image x images), so a pipeline with crops or more steps is compared at its cost.

Figures are PNG (and PDF + SVG for a paper), tables CSV, Markdown and LaTeX (booktabs).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featviz.app.report.runs import natural_key, varying_keys
from featviz.app.report.tables import default_columns, fmt
from featviz.rundir import RESULT_NAME, JobRecord
from featviz.stats import Interval, Paired, mean_ci, paired
from featviz.tools.figures import figure, save_figure

#: Swept keys that replicate a measurement rather than change the method: the effects are averaged (and paired) over them.
REPLICATE_KEYS = ("seed", "objective.unit")
#: The cost axis of "quality at equal compute".
COMPUTE = "forward_passes"
PANELS_MAX = 8  # metrics per figure


@dataclass
class Arm:
    """One value of a setting: a metric's mean over the runs at that value, with its interval."""

    key: str
    value: str
    metric: str
    interval: Interval


@dataclass
class Comparison:
    """One value of a setting against its baseline value, paired over the runs that agree on everything else."""

    key: str
    baseline: str
    value: str
    metric: str
    result: Paired


@dataclass
class Effects:
    """Everything the Effects section shows."""

    factors: list[str]  # swept settings
    replicates: list[str]  # swept replicate keys
    metrics: list[str]
    values: dict[str, list[str]]  # setting -> its values, baseline first
    arms: list[Arm] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    points: list[tuple[dict[str, str], dict[str, float]]] = field(default_factory=list)  # each run's settings and metrics

    def arm(self, key: str, value: str, metric: str) -> Interval:
        return next(a.interval for a in self.arms if (a.key, a.value, a.metric) == (key, value, metric))


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


#: Values that mean "the setting is off": the baseline of a categorical setting when present.
OFF = ("none", "null", "off", "false", "default", "baseline")


def ordered(values: set[str]) -> list[str]:
    """Baseline first: numbers ascending (the smallest, often 0 = off), other values in natural
    order with an "off" value (:data:`OFF`: ``experiment/family=none``) moved to the front."""
    if all(is_number(v) for v in values):
        return sorted(values, key=float)
    return sorted(values, key=lambda v: (v.lower() not in OFF, natural_key(v)))


def forward_passes(run: JobRecord) -> float | None:
    """Images through the network over the run: steps x (crops or 1) views x batch, from its recorded config."""
    try:
        cfg = json.loads((run.folder / RESULT_NAME).read_text()).get("config") or {}
        views = max(1, int((cfg.get("transforms") or {}).get("crops") or 0))
        return float(int(cfg["steps"]) * views * int(cfg.get("batch", 1)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compute(runs: Sequence[JobRecord], metrics: Sequence[str] | None = None, replicate_keys: Sequence[str] = REPLICATE_KEYS, seed: int = 0) -> Effects | None:
    """The effects of the sweep ``runs`` (completed runs only); None when no setting varies."""
    done = [r for r in runs if r.status == "completed"]
    swept = varying_keys(done)
    factors = [k for k in swept if k not in replicate_keys]
    if not factors:
        return None
    points = []
    for run in done:
        values = dict(run.metrics)
        passes = forward_passes(run)
        if passes is not None:
            values[COMPUTE] = passes
        points.append(({k: run.settings.get(k, "") for k in swept}, values))
    present = {m for _, v in points for m in v}
    chosen = [m for m in (metrics or [*default_columns(present), COMPUTE]) if m in present]
    effects = Effects(factors, [k for k in swept if k in replicate_keys], chosen, {}, points=points)
    for key in factors:
        values = ordered({s[key] for s, _ in points})
        effects.values[key] = values
        others = [k for k in swept if k != key]
        by_value = {v: {tuple(s[k] for k in others): m for s, m in points if s[key] == v} for v in values}
        for metric in chosen:
            for v in values:
                sample = [m[metric] for m in by_value[v].values() if metric in m]
                effects.arms.append(Arm(key, v, metric, mean_ci(sample, seed)))
            base = by_value[values[0]]
            for v in values[1:]:
                shared = [t for t in by_value[v] if t in base and metric in base[t] and metric in by_value[v][t]]
                result = paired([base[t][metric] for t in shared], [by_value[v][t][metric] for t in shared], seed)
                effects.comparisons.append(Comparison(key, values[0], v, metric, result))
    return effects


# --- figures -------------------------------------------------------------------------------


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return math.ceil(n / cols), cols


def plot_key(effects: Effects, key: str, path: Path, vector: tuple[str, ...] = ()) -> Path:
    """Every metric against ``key``'s values, mean and 95 % interval over the other swept keys."""
    metrics = effects.metrics[:PANELS_MAX]
    rows, cols = _grid(len(metrics))
    fig = figure(3.2 * cols, 2.6 * rows)
    values = effects.values[key]
    numeric = all(is_number(v) for v in values)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    positive = numeric and min(xs) > 0
    log = positive and max(xs) / min(xs) >= 100
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        arms = [effects.arm(key, v, metric) for v in values]
        means = [a.mean for a in arms]
        lows = [a.low if math.isfinite(a.low) else a.mean for a in arms]
        highs = [a.high if math.isfinite(a.high) else a.mean for a in arms]
        if numeric:
            ax.plot(xs, means, marker="o", color="C0")
            ax.fill_between(xs, lows, highs, color="C0", alpha=0.25, linewidth=0)
            if log:
                ax.set_xscale("log")
        else:
            ax.errorbar(xs, means, yerr=[[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]], fmt="o", capsize=3)
            ax.set_xticks(xs, values, rotation=30, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"effect of {key}: mean and 95% bootstrap interval over {', '.join(effects.replicates) or 'the other settings'} (n per point: {effects.arms[0].interval.n})", fontsize=9)
    return save_figure(fig, path, vector)


def plot_heatmaps(effects: Effects, path: Path, vector: tuple[str, ...] = ()) -> Path | None:
    """Each metric's mean over the first two settings' grid (a two-way sweep); None for a one-way sweep."""
    if len(effects.factors) < 2:
        return None
    a, b = effects.factors[:2]
    va, vb = effects.values[a], effects.values[b]
    metrics = effects.metrics[:PANELS_MAX]
    rows, cols = _grid(len(metrics))
    fig = figure(3.4 * cols, 2.8 * rows)
    for i, metric in enumerate(metrics):
        grid = []
        for x in va:
            row = []
            for y in vb:
                cell = [m[metric] for s, m in effects.points if s[a] == x and s[b] == y and metric in m]
                row.append(sum(cell) / len(cell) if cell else math.nan)
            grid.append(row)
        ax = fig.add_subplot(rows, cols, i + 1)
        image = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(vb)), vb, fontsize=7, rotation=30)
        ax.set_yticks(range(len(va)), va, fontsize=7)
        ax.set_xlabel(b, fontsize=8)
        ax.set_ylabel(a, fontsize=8)
        ax.set_title(metric, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return save_figure(fig, path, vector)


def plot_compute(effects: Effects, path: Path, vector: tuple[str, ...] = ()) -> Path | None:
    """Quality at equal compute: each run's metric against its forward passes, coloured by the first setting."""
    metrics = [m for m in effects.metrics if m != COMPUTE][:PANELS_MAX]
    if not metrics or not any(COMPUTE in m for _, m in effects.points):
        return None
    key = effects.factors[0]
    rows, cols = _grid(len(metrics))
    fig = figure(3.2 * cols, 2.6 * rows)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j, value in enumerate(effects.values[key]):
            pts = [(m[COMPUTE], m[metric]) for s, m in effects.points if s[key] == value and COMPUTE in m and metric in m]
            if pts:
                ax.scatter(*zip(*pts), s=14, color=f"C{j % 10}", label=f"{key}={value}")
        ax.set_xscale("log")
        ax.set_xlabel("forward passes (steps x views x images)", fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.axes[0].legend(fontsize=6)
    return save_figure(fig, path, vector)


# --- tables --------------------------------------------------------------------------------


def _p(p: float) -> str:
    return "" if not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def comparison_rows(effects: Effects) -> list[dict[str, str]]:
    """One row per (setting value vs baseline, metric), formatted."""
    rows = []
    for c in effects.comparisons:
        d = c.result.diff
        rows.append({
            "setting": c.key, "value": c.value, "baseline": c.baseline, "metric": c.metric, "n": str(d.n),
            "difference": fmt(d.mean), "ci_low": fmt(d.low), "ci_high": fmt(d.high), "p": _p(c.result.p_value),
            "d_z": fmt(c.result.effect_size), "pairs_needed": "" if c.result.pairs_needed is None else str(c.result.pairs_needed),
            "significant": "yes" if c.result.significant else "no", "note": c.result.note,
        })
    return rows


def arms_csv(effects: Effects) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["setting", "value", "metric", "mean", "ci_low", "ci_high", "n"])
    for a in effects.arms:
        writer.writerow([a.key, a.value, a.metric, a.interval.mean, a.interval.low, a.interval.high, a.interval.n])
    return out.getvalue()


def comparisons_csv(effects: Effects) -> str:
    rows = comparison_rows(effects)
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def comparisons_markdown(effects: Effects) -> str:
    rows = comparison_rows(effects)
    head = ["setting", "value vs baseline", "metric", "n", "difference [95% CI]", "p (Wilcoxon)", "d_z", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['value']} vs {r['baseline']} | {r['metric']} | {r['n']} | {r['difference']} [{r['ci_low']}, {r['ci_high']}] "
                     f"| {r['p']} | {r['d_z']} | {r['note']} |")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")


def comparisons_latex(effects: Effects) -> str:
    """A booktabs table of every paired comparison (``\\usepackage{booktabs}``)."""
    rows = comparison_rows(effects)
    lines = [r"\begin{tabular}{lllrlrr}", r"\toprule", r"setting & value vs baseline & metric & $n$ & difference [95\% CI] & $p$ & $d_z$ \\", r"\midrule"]
    for r in rows:
        mark = r"$^{*}$" if r["significant"] == "yes" else ""
        lines.append(f"{_tex(r['setting'])} & {_tex(r['value'])} vs {_tex(r['baseline'])} & {_tex(r['metric'])} & {r['n']} & "
                     f"{r['difference']} [{r['ci_low']}, {r['ci_high']}]{mark} & {r['p']} & {r['d_z']} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", r"% * : two-sided Wilcoxon signed-rank p < 0.05 with n >= 6 pairs; intervals: percentile bootstrap of the mean paired difference"]
    return "\n".join(lines) + "\n"


@dataclass
class Written:
    """The files of the Effects section, relative to the report folder."""

    figures: list[tuple[str, str]]  # (caption, png)
    tables: list[str]


def write(effects: Effects, out: Path, vector: tuple[str, ...] = ()) -> Written:
    """Every figure and table of ``effects`` into ``out`` (``effects_*`` files)."""
    from featviz.images import atomic_write_bytes

    figures: list[tuple[str, str]] = []
    for key in effects.factors:
        name = "effects_" + key.replace("/", "_").replace(".", "_") + ".png"
        plot_key(effects, key, out / name, vector)
        figures.append((f"{key}: every metric against its values (mean, 95% bootstrap interval)", name))
    if plot_heatmaps(effects, out / "effects_heatmap.png", vector):
        figures.append((f"{effects.factors[0]} x {effects.factors[1]}: mean of each metric", "effects_heatmap.png"))
    if plot_compute(effects, out / "effects_compute.png", vector):
        figures.append(("quality at equal compute: each metric against forward passes", "effects_compute.png"))
    tables = {"effects_arms.csv": arms_csv(effects), "effects_comparisons.csv": comparisons_csv(effects),
              "effects_comparisons.md": comparisons_markdown(effects), "effects_comparisons.tex": comparisons_latex(effects)}
    for name, text in tables.items():
        atomic_write_bytes(out / name, lambda f, text=text: f.write(text.encode()))
    return Written(figures, list(tables))


def html_section(effects: Effects, written: Written) -> str:
    """The Effects section of ``report.html``: the figures, then the paired comparisons as a sortable table."""
    from html import escape

    from featviz.tools.html_page import figures

    rows = comparison_rows(effects)
    head = ["setting", "value", "baseline", "metric", "n", "difference", "95% CI", "p (Wilcoxon)", "d_z", "pairs needed", "note"]
    lines = ['<table class="sortable">', "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for r in rows:
        cells = [r["setting"], r["value"], r["baseline"], r["metric"], r["n"], r["difference"], f"[{r['ci_low']}, {r['ci_high']}]", r["p"], r["d_z"],
                 r["pairs_needed"], r["note"]]
        style = ' class="sig"' if r["significant"] == "yes" else ""
        lines.append(f"<tr{style}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    replicates = ", ".join(effects.replicates) or "the other swept settings"
    intro = (f"<p>Each swept setting against its values, averaged over {escape(replicates)}: mean and 95% percentile-bootstrap interval. "
             "Below, each value against the setting's baseline (its first value), <em>paired</em> over runs that agree on every other "
             "swept key: mean difference with its interval, two-sided Wilcoxon signed-rank p, Cohen's d_z, n pairs, and the pairs this "
             "spread would need for an interval excluding 0. Bold rows: p &lt; 0.05 with n &ge; 6. Files: "
             + " · ".join(f'<a href="{escape(t)}">{escape(t)}</a>' for t in written.tables) + "</p>")
    return "\n".join([intro, figures(written.figures), *lines])
