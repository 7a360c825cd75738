"""``report.html``: the grid, the sortable table and the curves on one self-contained page.

Self-contained means: every image is a file in the report folder, referenced by a relative
path, with no script or style from elsewhere; so the page works from a ``file://`` URL, on a
machine without network, and after the report folder is copied. Links to the runs' folders
and W&B run folders are relative too (they resolve while the report sits in its sweep).
Sorting is a few lines of inline JavaScript; without it the table is in ``--sort`` order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from featviz.app.report.tables import Row, cell, header
from featviz.tools.html_page import document, figures


# Click a header: sort by it (numbers by value, text naturally), click again: reverse. Empty cells go last.
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], up = th.dataset.dir !== "asc";
  th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.dir); th.dataset.dir = up ? "asc" : "desc";
  const key = tr => tr.cells[col].dataset.v ?? tr.cells[col].textContent;
  const rows = [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b); if (x === "") return 1; if (y === "") return -1;
    const d = (isNaN(x) || isNaN(y)) ? x.localeCompare(y, undefined, {numeric: true}) : x - y;
    return up ? d : -d;
  });
  rows.forEach(r => body.appendChild(r));
}));
"""


@dataclass
class Links:
    """Relative links of one row's runs: ``(job, run folder, W&B run folder or None)``."""

    runs: list[tuple[str, str, str | None]] = field(default_factory=list)

    def html(self) -> str:
        parts = []
        for job, folder, wandb in self.runs:
            parts.append(f'<a href="{escape(folder)}/">{escape(job)}</a>' + (f' (<a href="{escape(wandb)}/">W&amp;B</a>)' if wandb else ""))
        return ", ".join(parts)


@dataclass
class Page:
    """What the page shows; images are file names inside the report folder."""

    title: str
    sweeps: list[str]  # one line per sweep: its folder and its counts
    grids: list[tuple[str, str]]  # (caption, image)
    rows: Sequence[Row]
    label_keys: Sequence[str]
    columns: Sequence[str]
    links: Mapping[tuple[str, ...], Links]  # by the row's jobs
    curves: list[tuple[str, str]]  # (caption, image)
    effects: str = ""  # the Effects section's HTML (featviz.app.report.effects.html_section); empty: no setting varies


def objective_note(page: Page) -> str:
    """What ``objective`` means in this table: with batch terms it is the optimized total."""
    present = {k for r in page.rows for k in r.values}
    if "objective_main" in present:
        return (
            "<p><code>objective</code> is what was optimized: the unit's objective <em>plus the diversity / alignment "
            "terms</em> (minus the diversity weight times the images' similarity); <code>objective_main</code> is the "
            "unit's objective alone on the untransformed images, <code>diversity</code> is 1 − their mean feature cosine.</p>"
        )
    if "diversity" in present:
        return "<p><code>objective</code> has no diversity term in these runs; <code>diversity</code> is 1 − the images' mean feature cosine.</p>"
    return ""


def _table(page: Page) -> str:
    head, show_n, show_status = header(page.label_keys, page.columns, page.rows)
    show_error = any(r.error for r in page.rows)
    head = [*head, *(["error"] if show_error else []), "runs"]
    lines = ['<table class="sortable">', "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for r in page.rows:
        cells = [f"<td>{escape(r.labels.get(k, ''))}</td>" for k in page.label_keys]
        cells += [f"<td>{escape(r.status)}</td>"] * show_status + [f'<td class="num" data-v="{r.n}">{r.n}</td>'] * show_n
        for c in page.columns:
            value = r.values.get(c)
            cells.append(f'<td class="num" data-v="{"" if value is None else repr(value)}">{escape(cell(r, c, "±"))}</td>')
        if show_error:
            cells.append(f'<td class="err">{escape(r.error)}</td>')
        cells.append(f"<td>{page.links.get(tuple(r.jobs), Links()).html()}</td>")
        lines.append(f'<tr{" class=failed" if r.status != "completed" else ""}>' + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def render_page(page: Page) -> str:
    """The whole page as one HTML string."""
    body = [
        *(f'<p class="meta">{escape(line)}</p>' for line in page.sweeps),
        '<p><a href="#snapshots">snapshots</a> · <a href="#metrics">metrics</a> · ' + ('<a href="#effects">effects</a> · ' if page.effects else "") + '<a href="#curves">curves</a> · '
        '<a href="metrics.csv">metrics.csv</a> · <a href="metrics.md">metrics.md</a> · <a href="metrics.tex">metrics.tex</a></p>',
        '<h2 id="snapshots">Snapshots</h2>',
        figures(page.grids) if page.grids else "<p>No grid (--no-grid).</p>",
        '<h2 id="metrics">Metrics</h2>',
        "<p>Final metrics of each run (mean ± std where runs are averaged); click a header to sort.</p>",
        objective_note(page),
        _table(page),
        *(['<h2 id="effects">Effects</h2>', page.effects] if page.effects else []),
        '<h2 id="curves">Curves</h2>',
        "<p><code>objective</code>: what the optimizer maximizes, on a transformed image; "
        "<code>activation</code>: the same objective on the untransformed image, every <code>activation_every</code> steps.</p>",
        figures(page.curves) if page.curves else "<p>No run recorded a metrics.jsonl.</p>",
    ]
    return document(page.title, body, script=SCRIPT)
