"""The report's table: one row per run (or per group of runs averaged), as CSV, Markdown and LaTeX.

Rows are generic over whatever numeric keys a run's ``result.json`` ``final`` holds, so
metrics other features add (the scorecard's ``transfer/*``, ``plausibility/*``, ...) show
up without a change here; :data:`DEFAULT_COLUMNS` only decides which come first.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from featviz.app.report.runs import natural_key
from featviz.rundir import JobRecord

#: Columns shown by default, in this order, when a run has them; ``prefix/*`` takes every key
#: under the prefix (sorted). The CSV has every metric.
DEFAULT_COLUMNS = (
    "objective",
    "objective_clean",
    "objective_main",  # batch runs with a diversity / alignment term: the unit alone (objective includes the term)
    "diversity",
    "robust/objective",
    "clean/prob",
    "robust/top1",
    "robust/top5",
    "robust/prob",
    "transfer/top1",
    "transfer/top5",
    "transfer/prob",
    "transfer/moderate_top1",
    "transfer/*",
    "plausibility/*",
    "path/*",
    "mis/*",
    "exemplar_ratio",
    "seed_stability",
    "hf_share",
    "spectral_slope",
    "colourfulness",
    "rms_contrast",
    "saturation",
    "reference/*",
    "tv",
    "steps_to_90",
    "wall_time_s",
)
SUMMARY_PREFIX = "final/"  # W&B's name of a final metric; --sort and --columns accept it


def default_columns(metrics: Iterable[str]) -> list[str]:
    """The :data:`DEFAULT_COLUMNS` present in ``metrics``, patterns expanded, in that order."""
    present = sorted(set(metrics))
    out: list[str] = []
    for entry in DEFAULT_COLUMNS:
        out += [m for m in (fnmatch.filter(present, entry) if "*" in entry else [entry] if entry in present else []) if m not in out]
    return out


def metric_name(name: str, metrics: Iterable[str]) -> str:
    """``name``, or the metric it means when given as W&B's ``final/<metric>``."""
    known = set(metrics)
    if name not in known and name.startswith(SUMMARY_PREFIX) and name[len(SUMMARY_PREFIX) :] in known:
        return name[len(SUMMARY_PREFIX) :]
    return name


@dataclass
class Row:
    """One table row: a run, or the mean of several runs (``n`` > 1)."""

    jobs: list[str]
    labels: dict[str, str]
    status: str
    values: dict[str, float]
    stds: dict[str, float]
    n: int
    error: str = ""  # the first failed member's one-line error


def finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def make_rows(runs: Sequence[JobRecord], keys: Sequence[str], mean_over: Sequence[str] = ()) -> list[Row]:
    """One row per run, or per group of runs that differ only in ``mean_over`` keys.

    A group's value of a metric is the mean over its completed runs that have it; its
    standard deviation needs two of them. Failed runs count in ``status``, not in means.
    """
    label_keys = [k for k in keys if k not in mean_over]
    groups: dict[tuple[str, ...], list[JobRecord]] = {}
    for r in runs:
        groups.setdefault(tuple(r.settings.get(k, "") for k in label_keys), []).append(r)
    rows = []
    for label, members in groups.items():
        done = [r for r in members if r.status == "completed"]
        failed = len(members) - len(done)
        metrics = list(dict.fromkeys(k for r in done for k in r.metrics))
        values, stds = {}, {}
        for m in metrics:
            xs = [r.metrics[m] for r in done if finite(r.metrics.get(m))]
            if xs:
                values[m] = statistics.fmean(xs)
                if len(xs) > 1:
                    stds[m] = statistics.stdev(xs)
        if not failed:
            status = "completed"
        else:
            status = members[0].status if len(members) == 1 else f"{failed} of {len(members)} not completed"
        error = next((r.error for r in members if r.error), "")
        rows.append(Row([r.job for r in members], dict(zip(label_keys, label)), status, values, stds, len(done), error))
    return rows


def sort_rows(rows: list[Row], metric: str | None, descending: bool) -> list[Row]:
    """Sort by a metric (or a label); rows without it go last either way."""
    if metric is None:
        return rows
    have = [r for r in rows if finite(r.values.get(metric)) or metric in r.labels]
    missing = [r for r in rows if r not in have]

    def key(r: Row) -> object:
        return r.values[metric] if metric in r.values else natural_key(r.labels[metric])

    return sorted(have, key=key, reverse=descending) + missing


def fmt(v: float | None) -> str:
    """Three significant digits, trailing zeros kept (``-2.00``, not ``-2``); integers as integers."""
    if v is None or not finite(v):
        return "—"
    if float(v).is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:#.3g}"


def _decimals(x: float, significant: int) -> int:
    """Decimal places that show ``significant`` digits of ``x`` (0 for large numbers)."""
    return max(0, significant - 1 - math.floor(math.log10(abs(x)))) if x else 0


def cell(row: Row, metric: str, pm: str) -> str:
    """``mean ± std``: the std to two significant digits, the mean to the same decimal place.

    The mean keeps at least its own three significant digits, so a spread far below the
    mean's precision still shows (``-2.000 ± 0.0004`` would hide it: ``-1.9996 ± 0.00040``).
    """
    mean, std = row.values.get(metric), row.stds.get(metric)
    if mean is None or not finite(mean) or std is None or not finite(std):
        return fmt(mean)
    if abs(mean) >= 1e6 or (mean and abs(mean) < 1e-4):
        return f"{mean:.3g} {pm} {std:.2g}"
    decimals = max(_decimals(std, 2) if std else 0, _decimals(mean, 3) if abs(mean) < 100 else 0)
    return f"{mean:.{decimals}f} {pm} {std:.{decimals}f}"


def header(label_keys: Sequence[str], columns: Sequence[str], rows: Sequence[Row]) -> tuple[list[str], bool, bool]:
    """The column names, and whether the ``n`` and ``status`` columns are needed."""
    show_n = any(r.n != 1 for r in rows)
    show_status = any(r.status != "completed" for r in rows)
    return [*label_keys, *(["status"] if show_status else []), *(["n"] if show_n else []), *columns], show_n, show_status


def to_markdown(rows: Sequence[Row], label_keys: Sequence[str], columns: Sequence[str]) -> str:
    head, show_n, show_status = header(label_keys, columns, rows)
    align = ["---"] * len(label_keys) + ["---"] * show_status + ["---:"] * (show_n + len(columns))
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        cells = [r.labels.get(k, "") for k in label_keys] + [r.status] * show_status + [str(r.n)] * show_n
        lines.append("| " + " | ".join(cells + [cell(r, c, "±") for c in columns]) + " |")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(c, c) for c in text)


def to_latex(rows: Sequence[Row], label_keys: Sequence[str], columns: Sequence[str]) -> str:
    """A ``booktabs`` tabular (needs ``\\usepackage{booktabs}``)."""
    head, show_n, show_status = header(label_keys, columns, rows)
    spec = "l" * (len(label_keys) + show_status) + "r" * (show_n + len(columns))
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(_tex(h) for h in head) + " \\\\", "\\midrule"]
    for r in rows:
        cells = [_tex(r.labels.get(k, "")) for k in label_keys] + [_tex(r.status)] * show_status + [str(r.n)] * show_n
        cells += [cell(r, c, "$\\pm$").replace("—", "--") for c in columns]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def all_metrics(rows: Sequence[Row]) -> list[str]:
    """Every metric of any row: the default columns first, then the rest alphabetically."""
    first = default_columns(m for r in rows for m in r.values)
    return first + sorted({m for r in rows for m in r.values} - set(first))


def to_csv(rows: Sequence[Row], label_keys: Sequence[str]) -> str:
    """Every metric at full precision; ``<metric>_std`` columns when rows are means."""
    metrics = all_metrics(rows)
    with_std = [m for m in metrics if any(m in r.stds for r in rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["jobs", *label_keys, "status", "n", *metrics, *(f"{m}_std" for m in with_std), "error"])
    for r in rows:
        w.writerow(
            [" ".join(r.jobs), *(r.labels.get(k, "") for k in label_keys), r.status, r.n]
            + [repr(r.values[m]) if m in r.values else "" for m in metrics]
            + [repr(r.stds[m]) if m in r.stds else "" for m in with_std]
            + [r.error]
        )
    return buf.getvalue()
