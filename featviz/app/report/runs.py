"""The runs a report is about: one sweep, several sweeps side by side, or one run folder.

Everything is read through :func:`featviz.rundir.read_sweep`. Several sweeps become one
list of runs with an extra ``sweep`` setting (the sweep folder's name), so the same keys
line up in one table and the differences between sweeps are one more label column.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featviz.errors import ConfigError
from featviz.rundir import METRICS_NAME, JobRecord, read_step_records, read_sweep

SWEEP_KEY = "sweep"


def natural_key(text: str) -> list[Any]:
    """"x2" before "x10": digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def load_runs(sweep_dir: Path) -> list[JobRecord]:
    """Every job under ``sweep_dir`` that wrote a ``result.json``, in job order (a run folder is one job)."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir} is not a directory; pass a sweep dir such as outputs/multirun/<date>/<time> or a run folder")
    runs = [job for job in read_sweep(sweep_dir) if job.has_result]
    if not runs:
        raise ConfigError(f"no result.json under {sweep_dir}; pass the directory of a finished sweep (outputs/multirun/<date>/<time>) or run")
    return runs


def sweep_labels(dirs: Sequence[Path]) -> list[str]:
    """Short distinct names for sweep folders: the last path part, more parts where names repeat."""
    for depth in range(1, 8):
        labels = ["/".join(d.resolve().parts[-depth:]) for d in dirs]
        if len(set(labels)) == len(labels):
            return labels
    return [str(i) for i in range(len(dirs))]


def experiment_name(runs: Sequence[JobRecord]) -> str | None:
    """The ``+experiment=NAME`` the runs were launched with (the same in all of them), else None."""
    names = {v for r in runs for k, v in r.settings.items() if k.lstrip("+~") == "experiment"}
    return names.pop() if len(names) == 1 else None


def load_sweeps(dirs: Sequence[Path]) -> dict[str, list[JobRecord]]:
    """The runs of each sweep by its label (``NAME TIME`` when the sweep ran ``+experiment=NAME``,
    so the report's title says what it is); with several, each run also carries ``sweep=<label>``."""
    loaded = [load_runs(d) for d in dirs]
    labels = [f"{name} {label}" if (name := experiment_name(runs)) else label for label, runs in zip(sweep_labels(dirs), loaded)]
    if len(dirs) == 1:
        return {labels[0]: loaded[0]}
    out = {}
    for label, runs in zip(labels, loaded):
        out[label] = [dataclasses.replace(r, job=f"{label}/{r.job}", overrides=[f"{SWEEP_KEY}={label}", *r.overrides]) for r in runs]
    return out


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


def read_curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Each numeric per-step metric of ``metrics.jsonl`` as ``(step, value)`` pairs; ``{}`` when there is none.

    A line cut short (a killed run) is skipped; a metric recorded only at some steps (the
    activation) has only those points.
    """
    curves: dict[str, list[tuple[int, float]]] = {}
    for step, rec, _ in read_step_records(folder / METRICS_NAME):
        for key, value in rec.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                curves.setdefault(key, []).append((step, float(value)))
    return curves


def wandb_dir(run: JobRecord) -> Path | None:
    """The folder of the run's newest W&B run, if it was tracked."""
    if run.wandb_run is None:
        return None
    found = sorted((run.folder / "wandb").glob(f"*run-*-{run.wandb_run}"))
    return found[-1] if found else None
