"""``featviz report SWEEP [SWEEP2 ...]``: finished sweeps (or one run) as one page to look at.

A sweep leaves one folder per job (``outputs/multirun/<date>/<time>/<n>/``), each with
``result.json`` (its overrides and final metrics), ``metrics.jsonl`` (every step) and
``snapshots/step_<n>.png``. Comparing runs means opening dozens of files; this command lays
them side by side in ``SWEEP/report/``:

* ``report.html``: everything below on one self-contained page, with a sortable table, the
  failed runs and their errors, and links to each run's folder and W&B run (:mod:`.html`);
* ``grid.png``: one row per run, labelled by the overrides that differ between runs, one
  column per snapshot step, one tile per batch image (:mod:`.grid`);
* ``curves.png`` (every run's objective and activation overlaid) and ``curves_runs.png``
  (one panel per run) from ``metrics.jsonl`` (:mod:`.plots`);
* ``metrics.csv`` (every metric, full precision), ``metrics.md`` and ``metrics.tex`` (a
  booktabs table for papers) with the chosen columns, sorted by any metric (:mod:`.tables`).

Several sweeps give one page comparing them, their runs in one table with a ``sweep``
column (:mod:`.runs`). ``--mean-over seed`` averages runs that differ only in the seed
(mean and standard deviation, ``n`` runs each), which is how a claim should be reported::

    python -m featviz report outputs/multirun/2026-01-01/12-00-00 --sort robust/prob --desc
    python -m featviz report SWEEP --mean-over seed --where transforms=standard --columns objective,hf_share
    python -m featviz report outputs/runs/2026-01-01/12-00-00          # one run: its curves and table
"""

from featviz.app.report.command import parser, report, run

__all__ = ["parser", "report", "run"]
