"""The ``featviz report`` command: read the runs, write every report file, say where they are."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from featviz.app.report import effects as effects_section
from featviz.app.report.effects import REPLICATE_KEYS
from featviz.app.report.grid import make_grid
from featviz.app.report.html import Links, Page, render_page
from featviz.app.report.plots import overlay, small_multiples
from featviz.app.report.runs import SWEEP_KEY, filter_runs, load_sweeps, read_curves, varying_keys, wandb_dir
from featviz.app.report.stability import add_seed_stability
from featviz.app.report.tables import Row, all_metrics, default_columns, fmt, make_rows, metric_name, sort_rows, to_csv, to_latex, to_markdown
from featviz.app.tracking.session import short_keys
from featviz.errors import ConfigError, DatasetError, OutputError
from featviz.images import atomic_write_bytes, check_images
from featviz.rundir import JobRecord, read_sweep


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="Turn finished sweeps (or one run) into report.html, a comparison grid, curves and metrics tables.")
    ap.add_argument("sweep_dirs", type=Path, nargs="+", metavar="SWEEP", help="a multirun dir (outputs/multirun/<date>/<time>) or one run folder; several: one page comparing them")
    ap.add_argument("--out", type=Path, default=None, help="where to write the report (default SWEEP/report; several sweeps: FIRST/report/compare)")
    ap.add_argument("--sort", metavar="METRIC", default=None, help="sort rows by this metric (final/METRIC works too) or override key, ascending")
    ap.add_argument("--desc", action="store_true", help="sort descending")
    ap.add_argument("--columns", default=None, help="comma-separated metrics for the tables (default: the usual ones present)")
    ap.add_argument("--mean-over", default=None, help="comma-separated override keys to average over, e.g. seed")
    ap.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", help="keep only matching runs (repeatable)")
    ap.add_argument("--steps", default=None, help="comma-separated snapshot steps for the grid columns (default: all)")
    ap.add_argument("--tile", type=int, default=96, help="grid tile size in pixels")
    ap.add_argument("--no-grid", action="store_true", help="no snapshot grid")
    ap.add_argument("--replicates", default=",".join(REPLICATE_KEYS), metavar="KEYS",
                    help=f"comma-separated swept keys that replicate rather than change the method: the Effects are averaged and paired over them (default: {','.join(REPLICATE_KEYS)})")
    ap.add_argument("--paper", action="store_true", help="also write OUT/paper/: every Effects figure as PDF, SVG and PNG, the tables as LaTeX (booktabs) and CSV, ready to include")
    ap.add_argument("--stability-model", default="efficientnet_lite1", metavar="NAME", help="network whose features give seed_stability with --mean-over seed (default: efficientnet_lite1; none = off)")
    return ap


def _label(run: JobRecord, keys: Sequence[str]) -> str:
    """``tv=0.5,seed=1`` from the keys that vary, ``job 3`` when none do."""
    short = short_keys(keys)
    return ",".join(f"{short[k]}={run.settings.get(k, '')}" for k in keys) or f"job {run.job}"


def _rel(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()


def _steps(text: str | None) -> list[int]:
    """``--steps 0,64,256`` as numbers; one line naming the flag for anything else."""
    try:
        steps = [int(s) for s in _split(text)]
    except ValueError:
        raise ConfigError(f"--steps {text!r} must be comma-separated snapshot step numbers, e.g. --steps 0,64,256") from None
    if any(s < 0 for s in steps):
        raise ConfigError(f"--steps {text!r} must be steps >= 0")
    return steps


def _readable(path: Path) -> bool:
    try:
        check_images([path], "report")
    except DatasetError:
        return False
    return True


def _drop_unreadable_images(runs: Sequence[JobRecord]) -> list[Path]:
    """Leave out of the grid the snapshots and finals that cannot be decoded (a 0-byte file a
    killed run or a full disk left); the paths left out, so the report can say which."""
    bad = []
    for run in runs:
        for step, path in list(run.snapshots.items()):
            if not _readable(path):
                bad.append(path)
                del run.snapshots[step]
        if run.final_image is not None and not _readable(run.final_image):
            bad.append(run.final_image)
            run.final_image = None
    return bad


def _missing(sweep_dir: Path) -> list[JobRecord]:
    """The jobs of a sweep with no usable ``result.json`` (killed before writing one, or stale)."""
    return [job for job in read_sweep(sweep_dir) if not job.has_result]


def _grids(sweeps: dict[str, list[JobRecord]], ordered: list[JobRecord], args: argparse.Namespace, out: Path) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """One grid per sweep, rows in table order, labelled by the keys that vary inside that sweep."""
    if args.tile < 8:
        raise ConfigError(f"--tile {args.tile} is too small; use 8 or more pixels")
    written, shown = {}, []
    for i, (label, members) in enumerate(sweeps.items()):
        jobs = {r.job for r in members}
        runs = [r for r in ordered if r.job in jobs]
        if not runs:
            continue
        keys = [k for k in varying_keys(runs) if k != SWEEP_KEY]
        steps = _steps(args.steps) or sorted({s for r in runs for s in r.snapshots})
        labels = []
        for r in runs:
            lines = [f"{k}={r.settings.get(k, '')}" for k in keys] or [f"job {r.job}"]
            if args.sort in r.metrics:
                lines.append(f"{args.sort}={fmt(r.metrics[args.sort])}")
            labels.append(lines)
        grid = make_grid(runs, labels, steps, args.tile)
        name = "grid.png" if len(sweeps) == 1 else f"grid_{i}.png"
        written["grid" if len(sweeps) == 1 else f"grid {label}"] = atomic_write_bytes(out / name, lambda f: grid.save(f, format="PNG", optimize=True))
        shown.append((f"{label}: rows = runs, columns = snapshot steps", name))
    return written, shown


def _curves(sweeps: dict[str, list[JobRecord]], ordered: list[JobRecord], out: Path, replicates: Sequence[str]) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """The overlaid curves (one column per sweep, a colour per setting of the swept keys that are not
    ``replicates``) and one small panel per run."""
    groups, coloured = {}, []
    for label, members in sweeps.items():
        jobs = {r.job for r in members}
        runs = [r for r in ordered if r.job in jobs]
        keys = [k for k in varying_keys(runs) if k != SWEEP_KEY]
        settings = [k for k in keys if k not in replicates]
        coloured += [k for k in settings if k not in coloured]
        groups[label] = [(_label(r, keys), _label(r, settings or keys), read_curves(r.folder)) for r in runs]
    written, shown = {}, []
    if (path := overlay(groups, out / "curves.png", ", ".join(short_keys(coloured).values()))) is not None:
        written["curves"] = path
        by = f", a colour per {', '.join(coloured)}" if coloured else ""
        shown.append(("every run overlaid" + (", one column per sweep" if len(groups) > 1 else "") + by, path.name))
    per_run = [(f"{label} {name}" if len(groups) > 1 else name, curves) for label, runs in groups.items() for name, _, curves in runs]
    if (path := small_multiples(per_run, out / "curves_runs.png")) is not None:
        written["curves_runs"] = path
        shown.append(("one panel per run", path.name))
    return written, shown


def _links(rows: Sequence[Row], runs: Sequence[JobRecord], out: Path) -> dict[tuple[str, ...], Links]:
    by_job = {r.job: r for r in runs}
    links = {}
    for row in rows:
        items = []
        for job in row.jobs:
            run = by_job[job]
            tracked = wandb_dir(run)
            items.append((job, _rel(run.folder, out), _rel(tracked, out) if tracked else None))
        links[tuple(row.jobs)] = Links(items)
    return links


def _sweep_line(path: Path, runs: Sequence[JobRecord]) -> str:
    """``DIR: 4 runs (3 completed, 1 missing: job 2 ...)``: the jobs without a result are named, not left out."""
    missing = _missing(path)
    counts: dict[str, int] = {}
    for r in [*runs, *missing]:
        counts[r.status] = counts.get(r.status, 0) + 1
    total = len(runs) + len(missing)
    named = "; ".join(f"job {j.job} {j.status}: {j.error}" for j in missing)
    return f"{path}: {total} run{'s' * (total != 1)} (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")" + (f"; {named}" if named else "")


def report(args: argparse.Namespace) -> dict[str, Path]:
    """Write the report files; returns their paths by kind."""
    sweeps = load_sweeps(args.sweep_dirs)
    runs = filter_runs([r for members in sweeps.values() for r in members], args.where)
    keys = varying_keys(runs)
    known = {k for r in runs for k in r.settings}
    mean_over = _split(args.mean_over)
    unknown = [k for k in mean_over if k not in known]
    if unknown:
        raise ConfigError(f"--mean-over {unknown} not an override of this sweep; use some of {sorted(known)}")
    rows = make_rows(runs, keys, mean_over)
    if "seed" in mean_over and args.stability_model not in ("", "none"):
        add_seed_stability(rows, runs, args.stability_model)
    metrics = all_metrics(rows)
    if args.sort is not None:
        args.sort = metric_name(args.sort, metrics)
        if args.sort not in metrics and args.sort not in keys:
            raise ConfigError(f"--sort {args.sort!r} is not a metric of this sweep; use one of {sorted(metrics)}")
    rows = sort_rows(rows, args.sort, args.desc)
    _steps(args.steps)  # checked before anything is written
    columns = [metric_name(c, metrics) for c in _split(args.columns)] or default_columns(metrics)
    missing = [c for c in columns if c not in metrics]
    if missing:
        raise ConfigError(f"--columns {missing} not metrics of this sweep; use some of {sorted(metrics)}")
    label_keys = [k for k in keys if k not in mean_over]

    out = args.out or (args.sweep_dirs[0] / "report" if len(args.sweep_dirs) == 1 else args.sweep_dirs[0] / "report" / "compare")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report files (default: SWEEP/report)")
    try:
        return _write(args, sweeps, runs, rows, keys, label_keys, columns, out)
    except OSError as exc:
        raise OutputError(f"cannot write the report in {out}: {exc.strerror or exc} ({exc.filename}); choose a writable folder with --out DIR") from None


def _write(args: argparse.Namespace, sweeps: dict[str, list[JobRecord]], runs: list[JobRecord], rows: list[Row], keys: list[str],
           label_keys: list[str], columns: list[str], out: Path) -> dict[str, Path]:
    """Write every report file into ``out``; their paths by kind."""
    written = {
        "csv": atomic_write_bytes(out / "metrics.csv", lambda f: f.write(to_csv(rows, label_keys).encode())),
        "md": atomic_write_bytes(out / "metrics.md", lambda f: f.write(to_markdown(rows, label_keys, columns).encode())),
        "tex": atomic_write_bytes(out / "metrics.tex", lambda f: f.write(to_latex(rows, label_keys, columns).encode())),
    }
    ordered = [r for row in rows for r in runs if r.job in row.jobs]
    grids: list[tuple[str, str]] = []
    written.update({f"left out (unreadable) {i}": path for i, path in enumerate(_drop_unreadable_images(runs))})
    if not args.no_grid:
        grid_files, grids = _grids(sweeps, ordered, args, out)
        written.update(grid_files)
    curve_files, curves = _curves(sweeps, ordered, out, _split(args.replicates))
    written.update(curve_files)
    effects_html = ""
    effects = effects_section.compute(runs, replicate_keys=_split(args.replicates))
    if effects is not None:
        section = effects_section.write(effects, out)
        written.update({f"effects {name}": out / name for _, name in section.figures})
        effects_html = effects_section.html_section(effects, section)
        if args.paper:
            (out / "paper").mkdir(exist_ok=True)
            paper = effects_section.write(effects, out / "paper", ("pdf", "svg"))
            written["paper"] = out / "paper"
            # per setting (mean and t interval over the replicates), not one row per run
            written["paper metrics.tex"] = atomic_write_bytes(out / "paper" / "metrics.tex", lambda f: f.write(effects_section.metrics_latex(effects).encode()))
            written.update({f"paper {name}": out / "paper" / name for name in paper.tables})
    labels = list(sweeps)
    page = Page(
        title=f"featviz report: {' vs '.join(labels)}",
        sweeps=[_sweep_line(d, members) for d, members in zip(args.sweep_dirs, sweeps.values())],
        grids=grids,
        rows=rows,
        label_keys=label_keys,
        columns=columns,
        links=_links(rows, runs, out),
        curves=curves,
        effects=effects_html,
    )
    written["html"] = atomic_write_bytes(out / "report.html", lambda f: f.write(render_page(page).encode()))
    return written


def run(args: argparse.Namespace) -> str:
    """Write the report; returns the Markdown table, the jobs without a result and the paths written."""
    written = report(args)
    missing = [f"missing: {d / j.job if j.job != '.' else d}: {j.status}: {j.error}" for d in args.sweep_dirs for j in _missing(d)]
    return "\n".join([written["md"].read_text().rstrip("\n"), *missing, *(f"{kind}: {path}" for kind, path in written.items())])
