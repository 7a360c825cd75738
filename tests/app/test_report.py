"""Tests for `featviz report` on a real tiny sweep (4 jobs of 4 steps at 32 px)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from featviz.app.cli import main as cli_main


def main(argv: list[str]) -> int:
    return cli_main(["report", *argv])

SMALL = ["logger=none", "progress=false", "param.size=32", "model.input_size=64", "steps=4", "objective.layer=blocks.2", "snapshots=[0,2,4]", "metrics.views=2", "metrics.eval_model=null"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    proc = run_cli("-m", *SMALL, "param=pixel,fft", "seed=0,1", f"hydra.sweep.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def finals(sweep: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(param, seed) -> final metrics, read straight from each job's result.json."""
    out = {}
    for p in sweep.glob("*/result.json"):
        data = json.loads(p.read_text())
        out[(data["config"]["param"]["kind"], str(data["config"]["seed"]))] = data["final"]
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_report_writes_sorted_grid_and_tables(sweep: Path, tmp_path: Path, capsys) -> None:
    assert main([str(sweep), "--out", str(tmp_path), "--sort", "hf_share"]) == 0
    rows = read_csv(tmp_path / "metrics.csv")
    truth = finals(sweep)
    assert len(rows) == 4
    assert [float(r["hf_share"]) for r in rows] == sorted(v["hf_share"] for v in truth.values())
    for r in rows:
        assert float(r["spectral_slope"]) == truth[(r["param"], r["seed"])]["spectral_slope"]
    md = (tmp_path / "metrics.md").read_text().splitlines()
    assert md[0].startswith("| param | seed |") and "hf_share" in md[0]
    assert len(md) == 2 + 4
    tex = (tmp_path / "metrics.tex").read_text()
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "hf\\_share", "\\begin{tabular}{ll"):
        assert token in tex
    assert "| param | seed |" in capsys.readouterr().out
    with Image.open(tmp_path / "grid.png") as grid:
        full = grid.size

    assert main([str(sweep), "--out", str(tmp_path / "desc"), "--sort", "hf_share", "--desc"]) == 0
    assert [r["jobs"] for r in read_csv(tmp_path / "desc" / "metrics.csv")] == [r["jobs"] for r in reversed(rows)]

    # Fewer runs -> fewer grid rows; fewer steps -> fewer grid columns.
    assert main([str(sweep), "--out", str(tmp_path / "few"), "--where", "param=pixel", "--steps", "0,4", "--tile", "32"]) == 0
    with Image.open(tmp_path / "few" / "grid.png") as small:
        assert small.size[0] < full[0] and small.size[1] < full[1]
    assert {r["seed"] for r in read_csv(tmp_path / "few" / "metrics.csv")} == {"0", "1"}
    assert "param" not in read_csv(tmp_path / "few" / "metrics.csv")[0]  # constant after --where


def test_mean_over_seed_averages_runs(sweep: Path, tmp_path: Path) -> None:
    assert main([str(sweep), "--out", str(tmp_path), "--mean-over", "seed", "--no-grid", "--columns", "objective,tv"]) == 0
    assert not (tmp_path / "grid.png").exists()
    rows = {r["param"]: r for r in read_csv(tmp_path / "metrics.csv")}
    truth = finals(sweep)
    for kind in ("pixel", "fft"):
        tvs = [truth[(kind, s)]["tv"] for s in ("0", "1")]
        assert rows[kind]["n"] == "2"
        assert float(rows[kind]["tv"]) == pytest.approx(statistics.fmean(tvs))
        assert float(rows[kind]["tv_std"]) == pytest.approx(statistics.stdev(tvs))
    md = (tmp_path / "metrics.md").read_text()
    assert md.splitlines()[0] == "| param | n | objective | tv |"
    assert "±" in md


def test_failed_run_is_listed_not_averaged(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    proc = run_cli(*SMALL, "param=pixel", "objective.unit=500", f"hydra.run.dir={copy / '4'}")
    assert proc.returncode != 0
    assert main([str(copy), "--out", str(tmp_path / "r"), "--sort", "tv"]) == 0
    rows = read_csv(tmp_path / "r" / "metrics.csv")
    assert rows[-1]["jobs"] == "4" and rows[-1]["status"] == "failed" and rows[-1]["tv"] == ""
    assert "| failed |" in (tmp_path / "r" / "metrics.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sort", "nosuch"], "hf_share"),
        (["--where", "colour=red"], "not an override"),
        (["--where", "seed=7"], "no run matches"),
        (["--mean-over", "colour"], "not an override"),
        (["--columns", "objective,nosuch"], "nosuch"),
    ],
)
def test_bad_options_are_one_clear_line(sweep: Path, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main([str(sweep), "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featviz report: error:") and message in err[0]


def test_empty_dir_and_cli_entry_point(sweep: Path, tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no result.json" in capsys.readouterr().err
    proc = run_cli("report", str(sweep), "--no-grid", "--out", str(tmp_path / "cli"))
    assert proc.returncode == 0, proc.stderr
    assert "| param | seed |" in proc.stdout and (tmp_path / "cli" / "metrics.tex").exists()


# --- report.html, curves, batches, several sweeps ------------------------------------------


def img_sources(page: Path) -> list[str]:
    """Every ``<img src>`` of an HTML page."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Images(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "img":
                found.append(dict(attrs)["src"] or "")

    Images().feed(page.read_text())
    return found


def test_html_page_has_every_run_curves_and_relative_images(sweep: Path, tmp_path: Path) -> None:
    assert main([str(sweep), "--out", str(tmp_path), "--sort", "final/hf_share"]) == 0  # W&B's name of the metric
    page = (tmp_path / "report.html").read_text()
    sources = img_sources(tmp_path / "report.html")
    assert [s for s in sources if not s.startswith("effects_")] == ["grid.png", "curves.png", "curves_runs.png"]
    assert "effects_param.png" in sources  # the Effects section: the swept setting against every metric
    assert all((tmp_path / s).is_file() for s in sources)
    metrics_table = page.split('<h2 id="metrics">')[1].split("<h2")[0]
    assert metrics_table.count("<tr") == 1 + 4 and 'class="sortable"' in page
    for job in ("0", "1", "2", "3"):
        assert f'href="{Path(os.path.relpath(sweep / job, tmp_path)).as_posix()}/"' in page
    rows = read_csv(tmp_path / "metrics.csv")
    assert [float(r["hf_share"]) for r in rows] == sorted(float(r["hf_share"]) for r in rows)
    # The activation curve is in every run's metrics.jsonl: every 8 steps, the snapshots and the last step.
    lines = [json.loads(x) for x in (sweep / "0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "activation" in r] == [0, 2, 4]
    with Image.open(tmp_path / "curves_runs.png") as im:
        assert im.width > 2 * 200  # one panel per run, several across


def test_failed_run_shows_its_error_in_the_page(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    proc = run_cli(*SMALL, "param=pixel", "objective.unit=500", f"hydra.run.dir={copy / '4'}")
    assert proc.returncode != 0
    assert main([str(copy), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert '<tr class=failed>' in page and "500" in page.split("<tr class=failed>")[1].split("</tr>")[0]
    assert "500" in read_csv(tmp_path / "r" / "metrics.csv")[-1]["error"]


def test_one_run_folder_is_a_report_too(sweep: Path, tmp_path: Path) -> None:
    assert main([str(sweep / "0"), "--out", str(tmp_path)]) == 0
    assert len(read_csv(tmp_path / "metrics.csv")) == 1
    assert all((tmp_path / s).is_file() for s in img_sources(tmp_path / "report.html"))
    assert (tmp_path / "curves.png").is_file()


def test_two_sweeps_side_by_side(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(sweep, other, ignore=shutil.ignore_patterns("report"))
    assert main([str(sweep), str(other), "--out", str(tmp_path / "cmp"), "--where", "seed=0"]) == 0
    rows = read_csv(tmp_path / "cmp" / "metrics.csv")
    assert {r["sweep"] for r in rows} == {sweep.name, "other"} and len(rows) == 4
    shown = img_sources(tmp_path / "cmp" / "report.html")
    assert [s for s in shown if not s.startswith("effects_")] == ["grid_0.png", "grid_1.png", "curves.png", "curves_runs.png"]
    assert "effects_sweep.png" in shown  # the two sweeps compared as one more setting
    with Image.open(tmp_path / "cmp" / "curves.png") as both:
        assert both.width > 1.5 * 4.8 * 80  # one column of panels (4.8 in at 80 dpi) per sweep


def test_batch_runs_get_one_tile_per_image(tmp_path: Path) -> None:
    proc = run_cli(*SMALL, "batch=3", "steps=2", "snapshots=[0,2]", "metrics.views=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "r"), "--tile", "32"]) == 0
    with Image.open(tmp_path / "r" / "grid.png") as grid:
        arr = np.asarray(grid.convert("L"))
    assert grid.width > 2 * 3 * 32  # two steps, three 32 px tiles each
    rows = arr[arr.shape[0] // 2]  # a line through the tiles: mostly image, not white
    assert (rows[-3 * 36 :] < 250).mean() > 0.8


def test_digits_follow_the_spread() -> None:
    from featviz.app.report.tables import Row, cell, default_columns, fmt

    def row(mean: float, std: float) -> Row:
        return Row(["0"], {}, "completed", {"m": mean}, {"m": std}, 2)

    assert cell(row(-1.9996, 0.0004), "m", "±") == "-1.99960 ± 0.00040"  # was "-2 ± 0"
    assert cell(row(29.6, 2.3), "m", "±") == "29.6 ± 2.3"
    assert cell(row(0.245, 0.112), "m", "±") == "0.245 ± 0.112"
    assert fmt(-2.0) == "-2" and fmt(-1.9996) == "-2.00" and fmt(0.5) == "0.500"
    # Whatever the scorecard adds to result.json shows up, in DEFAULT_COLUMNS order.
    assert default_columns(["tv", "plausibility/b", "plausibility/a", "objective", "other"]) == ["objective", "plausibility/a", "plausibility/b", "tv"]


def test_curves_are_coloured_and_labelled_by_the_swept_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """24 runs of 4 settings x 6 seeds: 4 colours, each one legend entry naming its setting; 24 settings: 24 distinct colours."""
    from matplotlib.axes import Axes

    from featviz.app.report.plots import colours, overlay

    assert len(set(colours(24))) == 24 and len(set(colours(12))) == 12
    drawn: list[tuple[str | None, tuple]] = []
    plot = Axes.plot

    def spy(self, *args, **kwargs):
        drawn.append((kwargs.get("label"), kwargs.get("color")))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    runs = [(f"tv={tv},seed={s}", f"tv={tv}", {"objective": [(0, 0.0), (1, float(tv) + s)]}) for tv in range(4) for s in range(6)]
    assert overlay({"sweep": runs}, tmp_path / "curves.png", "tv") is not None
    assert len(drawn) == 24 and len({c for _, c in drawn}) == 4
    assert [label for label, _ in drawn if label] == [f"tv={tv} (6 runs)" for tv in range(4)]
