"""``featviz report SWEEP_DIR``: a finished sweep as one comparison grid and one table.

A sweep leaves one directory per job (``outputs/multirun/<date>/<time>/<n>/``), each with
``result.json`` (its overrides and final metrics) and ``snapshots/step_<n>.png``. Comparing
runs means opening dozens of files; this command lays them side by side:

* ``grid.png``: one row per run, labelled by the overrides that differ between runs, one
  column per snapshot step;
* ``metrics.csv`` (every metric, full precision), ``metrics.md`` and ``metrics.tex`` (a
  booktabs table for papers) with the chosen columns, sorted by any metric.

``--mean-over seed`` averages runs that differ only in the seed (mean and standard deviation,
``n`` runs each), which is how a claim should be reported. Usage::

    python -m featviz report outputs/multirun/2026-01-01/12-00-00 --sort robust/prob --desc
    python -m featviz report SWEEP --mean-over seed --where transforms=standard --columns objective,hf_share
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from featviz.errors import ConfigError
from featviz.images import atomic_write_bytes
from featviz.rundir import JobRecord, read_sweep

#: Table columns shown by default, in this order, when a run has them (the CSV has all).
DEFAULT_COLUMNS = (
    "objective",
    "objective_clean",
    "robust/objective",
    "clean/prob",
    "robust/top1",
    "robust/top5",
    "robust/prob",
    "transfer/top1",
    "transfer/top5",
    "transfer/prob",
    "hf_share",
    "spectral_slope",
    "tv",
    "steps_to_90",
    "wall_time_s",
)
def _natural_key(text: str) -> list[Any]:
    """"x2" before "x10": digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def load_runs(sweep_dir: Path) -> list[JobRecord]:
    """Every job under ``sweep_dir`` that wrote a ``result.json``, in job order."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir} is not a directory; pass a sweep dir such as outputs/multirun/<date>/<time>")
    runs = [job for job in read_sweep(sweep_dir) if job.has_result]
    if not runs:
        raise ConfigError(f"no result.json under {sweep_dir}; pass the directory of a finished sweep (outputs/multirun/<date>/<time>)")
    return runs


def varying_keys(runs: Sequence[JobRecord]) -> list[str]:
    """Override keys whose value differs between runs, in order of first appearance."""
    keys = list(dict.fromkeys(k for r in runs for k in r.settings))
    return [k for k in keys if len({r.settings.get(k, "") for r in runs}) > 1]


def filter_runs(runs: list[JobRecord], where: Sequence[str]) -> list[JobRecord]:
    """Keep runs whose overrides match every ``KEY=VALUE`` in ``where``."""
    known = {k for r in runs for k in r.settings}
    for cond in where:
        key, sep, value = cond.partition("=")
        if not sep:
            raise ConfigError(f"--where {cond!r} must be KEY=VALUE, e.g. --where seed=0")
        if key not in known:
            raise ConfigError(f"--where {key!r} is not an override of this sweep; use one of {sorted(known)}")
        runs = [r for r in runs if r.settings.get(key) == value]
    if not runs:
        raise ConfigError(f"no run matches --where {' '.join(where)}")
    return runs


# --- the table -------------------------------------------------------------------------


@dataclass
class Row:
    """One table row: a run, or the mean of several runs (``n`` > 1)."""

    jobs: list[str]
    labels: dict[str, str]
    status: str
    values: dict[str, float]
    stds: dict[str, float]
    n: int


def _finite(v: float | None) -> bool:
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
            xs = [r.metrics[m] for r in done if _finite(r.metrics.get(m))]
            if xs:
                values[m] = statistics.fmean(xs)
                if len(xs) > 1:
                    stds[m] = statistics.stdev(xs)
        if not failed:
            status = "completed"
        else:
            status = members[0].status if len(members) == 1 else f"{failed} of {len(members)} not completed"
        rows.append(Row([r.job for r in members], dict(zip(label_keys, label)), status, values, stds, len(done)))
    return rows


def sort_rows(rows: list[Row], metric: str | None, descending: bool) -> list[Row]:
    """Sort by a metric (or a label); rows without it go last either way."""
    if metric is None:
        return rows
    have = [r for r in rows if _finite(r.values.get(metric)) or metric in r.labels]
    missing = [r for r in rows if r not in have]

    def key(r: Row) -> Any:
        return r.values[metric] if metric in r.values else _natural_key(r.labels[metric])

    return sorted(have, key=key, reverse=descending) + missing


def _fmt(v: float | None) -> str:
    if not _finite(v):
        return "—"
    assert v is not None
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _cell(row: Row, metric: str, pm: str) -> str:
    """``mean ± std`` with the std at the mean's precision (no more digits than the mean has)."""
    text = _fmt(row.values.get(metric))
    std = row.stds.get(metric)
    if std is not None and text != "—":
        if "e" in text:
            text += f" {pm} {std:.2g}"
        else:
            decimals = len(text.partition(".")[2])
            text += f" {pm} {std:.{decimals}f}"
    return text


def _header(row_keys: Sequence[str], columns: Sequence[str], rows: Sequence[Row]) -> tuple[list[str], bool, bool]:
    show_n = any(r.n != 1 for r in rows)
    show_status = any(r.status != "completed" for r in rows)
    return [*row_keys, *(["status"] if show_status else []), *(["n"] if show_n else []), *columns], show_n, show_status


def to_markdown(rows: Sequence[Row], label_keys: Sequence[str], columns: Sequence[str]) -> str:
    head, show_n, show_status = _header(label_keys, columns, rows)
    align = ["---"] * len(label_keys) + ["---"] * show_status + ["---:"] * (show_n + len(columns))
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        cells = [r.labels.get(k, "") for k in label_keys] + [r.status] * show_status + [str(r.n)] * show_n
        lines.append("| " + " | ".join(cells + [_cell(r, c, "±") for c in columns]) + " |")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(c, c) for c in text)


def to_latex(rows: Sequence[Row], label_keys: Sequence[str], columns: Sequence[str]) -> str:
    """A ``booktabs`` tabular (needs ``\\usepackage{booktabs}``)."""
    head, show_n, show_status = _header(label_keys, columns, rows)
    spec = "l" * (len(label_keys) + show_status) + "r" * (show_n + len(columns))
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(_tex(h) for h in head) + " \\\\", "\\midrule"]
    for r in rows:
        cells = [_tex(r.labels.get(k, "")) for k in label_keys] + [_tex(r.status)] * show_status + [str(r.n)] * show_n
        cells += [_cell(r, c, "$\\pm$").replace("—", "--") for c in columns]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Row], label_keys: Sequence[str]) -> str:
    """Every metric at full precision; ``<metric>_std`` columns when rows are means."""
    metrics = [c for c in DEFAULT_COLUMNS if any(c in r.values for r in rows)]
    metrics += sorted({m for r in rows for m in r.values} - set(metrics))
    with_std = [m for m in metrics if any(m in r.stds for r in rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["jobs", *label_keys, "status", "n", *metrics, *(f"{m}_std" for m in with_std)])
    for r in rows:
        w.writerow(
            [" ".join(r.jobs), *(r.labels.get(k, "") for k in label_keys), r.status, r.n]
            + [repr(r.values[m]) if m in r.values else "" for m in metrics]
            + [repr(r.stds[m]) if m in r.stds else "" for m in with_std]
        )
    return buf.getvalue()


# --- the grid --------------------------------------------------------------------------


def make_grid(runs: Sequence[JobRecord], labels: Sequence[list[str]], steps: Sequence[int], tile: int) -> Image.Image:
    """Rows = runs (text label on the left), columns = snapshot ``steps``; gaps are grey."""
    font = ImageFont.load_default(size=max(10, tile // 8))
    pad, line_h = 4, max(10, tile // 8) + 3
    draw0 = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((int(draw0.textlength(t, font=font)) for lines in labels for t in lines), default=0) + 2 * pad
    head_h = line_h + 2 * pad
    row_h = max(tile, line_h * max((len(x) for x in labels), default=1)) + pad
    canvas = Image.new("RGB", (label_w + len(steps) * (tile + pad) + pad, head_h + len(runs) * row_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, step in enumerate(steps):
        x = label_w + j * (tile + pad)
        text = f"step {step}"
        draw.text((x + (tile - draw.textlength(text, font=font)) / 2, pad), text, fill="black", font=font)
    for i, (run, lines) in enumerate(zip(runs, labels)):
        y = head_h + i * row_h
        for k, text in enumerate(lines):
            draw.text((pad, y + k * line_h), text, fill="black", font=font)
        for j, step in enumerate(steps):
            x = label_w + j * (tile + pad)
            path = run.snapshots.get(step)
            if path is None:
                draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(220, 220, 220))
                continue
            with Image.open(path) as im:
                im = im.convert("RGB")
                scale = tile / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
            canvas.paste(im, (x, y))
    return canvas


# --- the command -----------------------------------------------------------------------


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="Turn a finished sweep into a comparison grid and a metrics table.")
    ap.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/multirun/<date>/<time>")
    ap.add_argument("--out", type=Path, default=None, help="where to write grid.png and metrics.{csv,md,tex} (default SWEEP_DIR/report)")
    ap.add_argument("--sort", metavar="METRIC", default=None, help="sort rows by this metric (or override key), ascending")
    ap.add_argument("--desc", action="store_true", help="sort descending")
    ap.add_argument("--columns", default=None, help="comma-separated metrics for the Markdown/LaTeX tables (default: the usual ones present)")
    ap.add_argument("--mean-over", default=None, help="comma-separated override keys to average over, e.g. seed")
    ap.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", help="keep only matching runs (repeatable)")
    ap.add_argument("--steps", default=None, help="comma-separated snapshot steps for the grid columns (default: all)")
    ap.add_argument("--tile", type=int, default=96, help="grid tile size in pixels")
    ap.add_argument("--no-grid", action="store_true", help="write only the tables")
    return ap


def report(args: argparse.Namespace) -> dict[str, Path]:
    """Write the report files; returns their paths by kind."""
    runs = filter_runs(load_runs(args.sweep_dir), args.where)
    keys = varying_keys(runs)
    mean_over = _split(args.mean_over)
    unknown = [k for k in mean_over if k not in {k for r in runs for k in r.settings}]
    if unknown:
        raise ConfigError(f"--mean-over {unknown} not an override of this sweep; use some of {sorted({k for r in runs for k in r.settings})}")
    rows = make_rows(runs, keys, mean_over)
    all_metrics = {m for r in rows for m in r.values}
    if args.sort is not None and args.sort not in all_metrics and args.sort not in keys:
        raise ConfigError(f"--sort {args.sort!r} is not a metric of this sweep; use one of {sorted(all_metrics)}")
    rows = sort_rows(rows, args.sort, args.desc)
    columns = _split(args.columns) or [c for c in DEFAULT_COLUMNS if c in all_metrics]
    missing = [c for c in columns if c not in all_metrics]
    if missing:
        raise ConfigError(f"--columns {missing} not metrics of this sweep; use some of {sorted(all_metrics)}")
    label_keys = [k for k in keys if k not in mean_over]

    out = args.out or args.sweep_dir / "report"
    written = {
        "csv": atomic_write_bytes(out / "metrics.csv", lambda f: f.write(to_csv(rows, label_keys).encode())),
        "md": atomic_write_bytes(out / "metrics.md", lambda f: f.write(to_markdown(rows, label_keys, columns).encode())),
        "tex": atomic_write_bytes(out / "metrics.tex", lambda f: f.write(to_latex(rows, label_keys, columns).encode())),
    }
    if not args.no_grid:
        if args.tile < 8:
            raise ConfigError(f"--tile {args.tile} is too small; use 8 or more pixels")
        ordered = [r for row in rows for r in runs if r.job in row.jobs]
        steps = [int(s) for s in _split(args.steps)] or sorted({s for r in ordered for s in r.snapshots})
        labels = []
        for r in ordered:
            lines = [f"{k}={r.settings.get(k, '')}" for k in keys] or [f"job {r.job}"]
            if args.sort in r.metrics:
                lines.append(f"{args.sort}={_fmt(r.metrics[args.sort])}")
            labels.append(lines)
        grid = make_grid(ordered, labels, steps, args.tile)
        written["grid"] = atomic_write_bytes(out / "grid.png", lambda f: grid.save(f, format="PNG", optimize=True))
    return written


def run(args: argparse.Namespace) -> str:
    """Write the report; returns the Markdown table and the paths written."""
    written = report(args)
    return written["md"].read_text().rstrip("\n") + "\n" + "\n".join(f"{kind}: {path}" for kind, path in written.items())
