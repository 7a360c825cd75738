"""The Effects section of a report: each swept setting's effect on every metric, with intervals and paired tests.

A sweep is run to support a claim about a setting, so for each swept key that is a *setting*
(not a replicate: seed, unit, class) this gives:

* every metric against the key's values, averaged over everything else the sweep varies,
  with its Student-t 95 % interval (:func:`featviz.stats.mean_ci`): a line with an error band
  for numbers (log x when the values span two decades or more), points with error bars otherwise;
* each value against the key's first value (its baseline: the smallest number, e.g. weight 0),
  *paired* over the runs that agree on every other swept key (the same seed, unit, class and
  other settings): the mean difference with the paired t-test's interval and p, the Holm and
  Benjamini-Hochberg adjustments over the table's quality rows, the signed-rank p beside it,
  Cohen's d_z, n and the pairs needed (:mod:`featviz.stats`), and the pairs that shared a pack
  (a fused sweep records the pack as a blocking factor; values in disjoint packs are confounded);
* compute and timing metrics (:func:`is_compute`) apart: never starred, not in the correction's
  family (a packed job's wall time is its pack's clock); metrics constant in every run dropped
  and named;
* each pair's difference (the paired-difference plot), and a heatmap of each metric over the
  first two settings when a sweep varies two or more;
* quality at equal compute, when the forward passes (steps x views per image x images) differ.

Figures are PNG (and PDF + SVG for a paper), tables CSV, Markdown and LaTeX (booktabs).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featviz.app.report.runs import natural_key, varying_keys
from featviz.app.report.tables import default_columns, fmt
from featviz.rundir import RESULT_NAME, JobRecord
from featviz.stats import CORRECTION, MIN_PAIRS, Interval, Paired, adjust, mean_ci, paired
from featviz.tools.figures import figure, save_figure

#: Swept keys that replicate a measurement rather than change the method: the effects are averaged (and paired) over them.
REPLICATE_KEYS = ("seed", "objective.unit")
#: The cost axis of "quality at equal compute".
COMPUTE = "forward_passes"
PANELS_MAX = 8  # metrics per figure; more metrics: more figures (effects_<key>_2.png, ...)
#: What a run costs rather than what its image is: reported apart, never starred, never in the correction's family.
COMPUTE_METRICS = ("wall_time_s", "steps_per_s", "images_per_s", "forward_passes", "steps_done", "time_*", "*_time_s", "*_per_s")


def is_compute(metric: str) -> bool:
    """A compute or timing metric (:data:`COMPUTE_METRICS`): a property of the run's cost (and, in a pack, the pack's clock), not of its image."""
    return any(fnmatch.fnmatch(metric, p) for p in COMPUTE_METRICS)


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
    pairs_in_pack: int = 0  # pairs whose two runs shared a pack (a fused sweep): compared on one clock
    confounded: bool = False  # the two values ran in disjoint packs: the pack and the setting cannot be told apart
    differences: list[float] = field(default_factory=list)  # each pair's difference (the paired-difference plot)

    @property
    def compute(self) -> bool:
        return is_compute(self.metric)

    @property
    def significant(self) -> bool:
        return self.result.significant and not self.compute and not self.confounded


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
    packs: list[int | None] = field(default_factory=list)  # each point's pack id (a fused sweep), None when solo
    dropped: list[str] = field(default_factory=list)  # metrics left out: the same value in every run

    @property
    def quality(self) -> list[str]:
        return [m for m in self.metrics if not is_compute(m)]

    @property
    def costs(self) -> list[str]:
        return [m for m in self.metrics if is_compute(m)]

    @property
    def packed(self) -> bool:
        return len({p for p in self.packs if p is not None}) > 1

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


def pack_of(run: JobRecord) -> int | None:
    """The pack a fused sweep rendered the run in (``result.json``'s ``pack.id``), None for a solo job."""
    try:
        pack = json.loads((run.folder / RESULT_NAME).read_text()).get("pack") or {}
        return int(pack["id"]) if "id" in pack and int(pack.get("size", 1)) > 1 else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _constant(points: Sequence[tuple[dict[str, str], dict[str, float]]], metric: str) -> bool:
    values = {m[metric] for _, m in points if metric in m and math.isfinite(m[metric])}
    return len(values) <= 1


def compute(runs: Sequence[JobRecord], metrics: Sequence[str] | None = None, replicate_keys: Sequence[str] = REPLICATE_KEYS, seed: int = 0) -> Effects | None:
    """The effects of the sweep ``runs`` (completed runs only); None when no setting varies."""
    done = [r for r in runs if r.status == "completed"]
    swept = varying_keys(done)
    factors = [k for k in swept if k not in replicate_keys]
    if not factors:
        return None
    points, packs = [], []
    for run in done:
        values = dict(run.metrics)
        passes = forward_passes(run)
        if passes is not None:
            values[COMPUTE] = passes
        points.append(({k: run.settings.get(k, "") for k in swept}, values))
        packs.append(pack_of(run))
    present = {m for _, v in points for m in v}
    wanted = [m for m in (metrics or [*default_columns(present), COMPUTE]) if m in present]
    chosen = [m for m in wanted if not _constant(points, m)]
    effects = Effects(factors, [k for k in swept if k in replicate_keys], chosen, {}, points=points, packs=packs,
                      dropped=[m for m in wanted if m not in chosen])
    for key in factors:
        values = ordered({s[key] for s, _ in points})
        effects.values[key] = values
        others = [k for k in swept if k != key]
        by_value = {v: {tuple(s[k] for k in others): (m, packs[i]) for i, (s, m) in enumerate(points) if s[key] == v} for v in values}
        packs_of = {v: {p for _, p in by_value[v].values()} for v in values}
        for metric in chosen:
            for v in values:
                sample = [m[metric] for m, _ in by_value[v].values() if metric in m]
                effects.arms.append(Arm(key, v, metric, mean_ci(sample, seed)))
            base = by_value[values[0]]
            for v in values[1:]:
                shared = [t for t in by_value[v] if t in base and metric in base[t][0] and metric in by_value[v][t][0]]
                a, b = [base[t][0][metric] for t in shared], [by_value[v][t][0][metric] for t in shared]
                result = paired(a, b, seed)
                in_pack = sum(1 for t in shared if base[t][1] is not None and base[t][1] == by_value[v][t][1])
                confounded = effects.packed and not (packs_of[values[0]] & packs_of[v])
                effects.comparisons.append(Comparison(key, values[0], v, metric, result, in_pack, confounded, [y - x for x, y in zip(a, b)]))
    # one family for the correction: every quality comparison of the table (compute rows are not claims)
    family = [c for c in effects.comparisons if not c.compute]
    for c, adjusted in zip(family, adjust([c.result for c in family])):
        c.result = adjusted
    return effects


# --- figures -------------------------------------------------------------------------------


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return math.ceil(n / cols), cols


def pages(metrics: Sequence[str]) -> list[list[str]]:
    """``metrics`` in figures of at most :data:`PANELS_MAX` panels: every metric gets its panel."""
    return [list(metrics[i : i + PANELS_MAX]) for i in range(0, len(metrics), PANELS_MAX)]


def _page_name(stem: str, page: int) -> str:
    return f"{stem}.png" if page == 0 else f"{stem}_{page + 1}.png"


def plot_key(effects: Effects, key: str, path: Path, vector: tuple[str, ...] = (), metrics: Sequence[str] | None = None) -> Path:
    """``metrics`` (default: the first page) against ``key``'s values, mean and 95 % t interval over the other swept keys."""
    metrics = list(metrics if metrics is not None else effects.metrics[:PANELS_MAX])
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
            ax.errorbar(xs, means, yerr=[[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]], fmt="o", color="C0",
                        ecolor="black", elinewidth=1.5, capsize=5, capthick=1.5, markersize=6, zorder=3)
            ax.set_xticks(xs, values, rotation=30, ha="right", fontsize=7)
            ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_title(metric + (" (compute)" if is_compute(metric) else ""), fontsize=9)
        ax.set_xlabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"effect of {key}: mean and 95% t interval over {', '.join(effects.replicates) or 'the other settings'} (n per point: {effects.arms[0].interval.n})", fontsize=9)
    return save_figure(fig, path, vector)


def plot_differences(effects: Effects, key: str, path: Path, vector: tuple[str, ...] = (), metrics: Sequence[str] | None = None) -> Path | None:
    """Each value minus the baseline, pair by pair (dots), with the mean difference and its paired-t 95 % interval; a line at 0."""
    metrics = list(metrics if metrics is not None else effects.quality[:PANELS_MAX])
    values = effects.values[key][1:]
    if not metrics or not values:
        return None
    rows, cols = _grid(len(metrics))
    fig = figure(3.2 * cols, 2.6 * rows)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axhline(0, color="grey", linewidth=0.8)
        for j, v in enumerate(values):
            c = next(c for c in effects.comparisons if (c.key, c.value, c.metric) == (key, v, metric))
            jitter = [j + 0.12 * (k - (len(c.differences) - 1) / 2) / max(1, len(c.differences)) for k in range(len(c.differences))]
            ax.scatter(jitter, c.differences, s=10, color="C0", alpha=0.6, zorder=2)
            d = c.result.diff
            if math.isfinite(d.low):
                ax.errorbar([j + 0.25], [d.mean], yerr=[[d.mean - d.low], [d.high - d.mean]], fmt="s", color="C3" if c.significant else "black",
                            elinewidth=1.5, capsize=5, markersize=5, zorder=3)
        ax.set_xticks(range(len(values)), [f"{v} - {effects.values[key][0]}" for v in values], rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(values) - 0.3)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{key}: paired differences against {effects.values[key][0]} (dots: pairs; square: mean, paired-t 95% interval; red: starred after {CORRECTION.title()})",
                 fontsize=9)
    return save_figure(fig, path, vector)


def plot_heatmaps(effects: Effects, path: Path, vector: tuple[str, ...] = (), metrics: Sequence[str] | None = None) -> Path | None:
    """Each metric's mean over the first two settings' grid (a two-way sweep); None for a one-way sweep."""
    if len(effects.factors) < 2:
        return None
    a, b = effects.factors[:2]
    va, vb = effects.values[a], effects.values[b]
    metrics = list(metrics if metrics is not None else effects.metrics[:PANELS_MAX])
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


def plot_compute(effects: Effects, path: Path, vector: tuple[str, ...] = (), metrics: Sequence[str] | None = None) -> Path | None:
    """Quality at equal compute: each run's metric (default: the first page) against its forward passes, coloured by
    the first setting; None when every run made the same forward passes (the plot would be one column of dots)."""
    metrics = list(metrics if metrics is not None else effects.quality[:PANELS_MAX])
    if not metrics or COMPUTE not in effects.metrics:
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
    """One row per (setting value vs baseline, metric), formatted: quality rows first, then compute rows."""
    rows = []
    for c in sorted(effects.comparisons, key=lambda c: c.compute):
        d, r = c.result.diff, c.result
        note = r.note
        if c.compute:
            note = "; ".join(filter(None, ["compute: not starred" + ("; packs share a clock" if effects.packed else ""), note]))
        if c.confounded:
            note = "; ".join(filter(None, [note, "the two values ran in different packs: confounded with the pack"]))
        elif effects.packed and c.pairs_in_pack < d.n:
            note = "; ".join(filter(None, [note, f"{d.n - c.pairs_in_pack} of {d.n} pairs cross packs"]))
        rows.append({
            "setting": c.key, "value": c.value, "baseline": c.baseline, "metric": c.metric, "kind": "compute" if c.compute else "quality",
            "n": str(d.n), "difference": fmt(d.mean), "ci_low": fmt(d.low), "ci_high": fmt(d.high), "p": _p(r.p_value),
            "p_holm": "" if c.compute else _p(r.p_adjusted), "q_bh": "" if c.compute else _p(r.q_value), "p_wilcoxon": _p(r.p_wilcoxon),
            "d_z": fmt(r.effect_size), "pairs_needed": "" if r.pairs_needed is None else str(r.pairs_needed),
            "pairs_in_pack": str(c.pairs_in_pack) if effects.packed or c.pairs_in_pack else "",
            "significant": "yes" if c.significant else "no", "note": note,
        })
    return rows


def family_line(effects: Effects) -> str:
    """What was corrected and how: the caption's sentence."""
    m = sum(1 for c in effects.comparisons if not c.compute and math.isfinite(c.result.p_value))
    starred = sum(1 for c in effects.comparisons if c.significant)
    return (f"family: the {m} quality comparisons of this table (every setting's values against its baseline, every image metric); "
            f"starred ({starred}): Holm-adjusted paired-t p < 0.05 with n >= {MIN_PAIRS} pairs (Holm: the chance that any starred row "
            "is a false claim stays at 5 %, whatever the dependence between rows, and a paper's reader takes each starred row as a claim); "
            "q: Benjamini-Hochberg over the same family; intervals: paired-t 95 % (unadjusted: they agree with the raw p); "
            "p (Wilcoxon): the signed-rank check; compute and timing rows are apart and never starred"
            + (" (packs share a clock: a packed job's wall time is its pack's)" if effects.packed else ""))


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
    """The quality comparisons as one Markdown table, the compute and timing rows as a second one below it."""
    rows = comparison_rows(effects)
    head = ["setting", "value vs baseline", "metric", "n", "difference [95% CI]", "p (t)", "p (Holm)", "q (BH)", "p (Wilcoxon)", "d_z", "pairs needed", "note"]
    text = ""
    for kind, title in (("quality", ""), ("compute", "Compute and timing (what a run cost, not what its image is: never starred"
                                                     + ("; packs share a clock" if effects.packed else "") + "):\n\n")):
        chosen = [r for r in rows if r["kind"] == kind]
        if not chosen:
            continue
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in chosen:
            star = "*" if r["significant"] == "yes" else ""
            lines.append(f"| {r['setting']} | {r['value']} vs {r['baseline']} | {r['metric']} | {r['n']} | {r['difference']} [{r['ci_low']}, {r['ci_high']}]{star} "
                         f"| {r['p']} | {r['p_holm']} | {r['q_bh']} | {r['p_wilcoxon']} | {r['d_z']} | {r['pairs_needed']} | {r['note']} |")
        text += title + "\n".join(lines) + "\n\n"
    dropped = f"; constant in every run, left out: {', '.join(effects.dropped)}" if effects.dropped else ""
    return text + f"{family_line(effects)}{dropped}.\n"


def _tex(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")


def comparisons_latex(effects: Effects) -> str:
    """A booktabs table of every paired comparison (``\\usepackage{booktabs}``): quality rows, then compute rows apart."""
    rows = comparison_rows(effects)
    lines = [r"\begin{tabular}{lllrlrrrrr}", r"\toprule",
             r"setting & value vs baseline & metric & $n$ & difference [95\% CI] & $p$ & $p_\mathrm{Holm}$ & $q_\mathrm{BH}$ & $p_\mathrm{W}$ & $d_z$ \\", r"\midrule"]
    compute_started = False
    for r in rows:
        if r["kind"] == "compute" and not compute_started:
            compute_started = True
            lines += [r"\midrule", r"\multicolumn{10}{l}{\emph{compute and timing (not starred" + (r"; packs share a clock" if effects.packed else "") + r")}} \\"]
        mark = r"$^{*}$" if r["significant"] == "yes" else ""
        lines.append(f"{_tex(r['setting'])} & {_tex(r['value'])} vs {_tex(r['baseline'])} & {_tex(r['metric'])} & {r['n']} & "
                     f"{r['difference']} [{r['ci_low']}, {r['ci_high']}]{mark} & {r['p']} & {r['p_holm']} & {r['q_bh']} & {r['p_wilcoxon']} & {r['d_z']} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", "% " + _tex(family_line(effects))]
    return "\n".join(lines) + "\n"


def metrics_latex(effects: Effects) -> str:
    """Per setting (each combination of the swept settings), each metric's mean and 95 % t interval over the replicates."""
    combos = list(dict.fromkeys(tuple(s[k] for k in effects.factors) for s, _ in effects.points))
    combos.sort(key=lambda c: tuple(effects.values[k].index(v) for k, v in zip(effects.factors, c)))
    metrics = effects.quality
    lines = [r"\begin{tabular}{" + "l" * len(effects.factors) + "r" + "l" * len(metrics) + "}", r"\toprule",
             " & ".join([*(_tex(k) for k in effects.factors), "$n$", *(_tex(m) for m in metrics)]) + r" \\", r"\midrule"]
    for combo in combos:
        members = [m for s, m in effects.points if tuple(s[k] for k in effects.factors) == combo]
        cells = []
        for metric in metrics:
            ci = mean_ci([m.get(metric) for m in members])
            cells.append(fmt(ci.mean) + (f" [{fmt(ci.low)}, {fmt(ci.high)}]" if math.isfinite(ci.low) else ""))
        lines.append(" & ".join([*(_tex(v) for v in combo), str(len(members)), *cells]) + r" \\")
    over = ", ".join(effects.replicates) or "the runs"
    lines += [r"\bottomrule", r"\end{tabular}", f"% mean [95 % t interval] over {_tex(over)}"]
    return "\n".join(lines) + "\n"


@dataclass
class Written:
    """The files of the Effects section, relative to the report folder."""

    figures: list[tuple[str, str]]  # (caption, png)
    tables: list[str]


def write(effects: Effects, out: Path, vector: tuple[str, ...] = ()) -> Written:
    """Every figure and table of ``effects`` into ``out`` (``effects_*`` files); every metric gets a panel."""
    from featviz.images import atomic_write_bytes

    figures: list[tuple[str, str]] = []

    def paged(stem: str, metrics: Sequence[str], caption: str, plot: Callable[[Path, list[str]], Path | None]) -> None:
        """One figure per page of ``metrics``, its caption saying which page of how many."""
        chunks = pages(metrics)
        for i, chunk in enumerate(chunks):
            name = _page_name(stem, i)
            if plot(out / name, chunk):
                figures.append((caption + (f" ({i + 1} of {len(chunks)})" if len(chunks) > 1 else ""), name))

    for key in effects.factors:
        stem = key.replace("/", "_").replace(".", "_")
        paged(f"effects_{stem}", effects.metrics, f"{key}: every metric against its values (mean, 95% t interval)",
              lambda path, chunk, key=key: plot_key(effects, key, path, vector, chunk))
        paged(f"effects_differences_{stem}", effects.quality, f"{key}: paired differences against {effects.values[key][0]}, with the mean and its 95% interval",
              lambda path, chunk, key=key: plot_differences(effects, key, path, vector, chunk))
    if len(effects.factors) >= 2:
        paged("effects_heatmap", effects.metrics, f"{effects.factors[0]} x {effects.factors[1]}: mean of each metric",
              lambda path, chunk: plot_heatmaps(effects, path, vector, chunk))
    paged("effects_compute", effects.quality, "quality at equal compute: each metric against forward passes",
          lambda path, chunk: plot_compute(effects, path, vector, chunk))
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
    head = ["setting", "value", "baseline", "metric", "n", "difference", "95% CI", "p (t)", "p (Holm)", "q (BH)", "p (Wilcoxon)", "d_z", "pairs needed",
            "pairs in one pack", "note"]
    lines = ['<table class="sortable">', "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for r in rows:
        cells = [r["setting"], r["value"], r["baseline"], r["metric"], r["n"], r["difference"], f"[{r['ci_low']}, {r['ci_high']}]", r["p"], r["p_holm"],
                 r["q_bh"], r["p_wilcoxon"], r["d_z"], r["pairs_needed"], r["pairs_in_pack"], r["note"]]
        style = ' class="sig"' if r["significant"] == "yes" else ""
        lines.append(f"<tr{style}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    replicates = ", ".join(effects.replicates) or "the other swept settings"
    dropped = f" Constant in every run, left out: {escape(', '.join(effects.dropped))}." if effects.dropped else ""
    intro = (f"<p>Each swept setting against its values, averaged over {escape(replicates)}: mean and 95% t interval. "
             "Below, each value against the setting's baseline (its first value), <em>paired</em> over runs that agree on every other "
             "swept key: mean difference with the paired t-test's 95% interval and p, the Holm-adjusted p and the Benjamini-Hochberg q "
             "over the table, the Wilcoxon signed-rank p as a check, Cohen's d_z, n pairs, and the pairs needed for 80% power at this d_z. "
             f"Bold rows: starred. {escape(family_line(effects))}.{dropped} Files: "
             + " · ".join(f'<a href="{escape(t)}">{escape(t)}</a>' for t in written.tables) + "</p>")
    return "\n".join([intro, figures(written.figures), *lines])
