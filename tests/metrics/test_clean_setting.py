"""Metrics measure what their names say in the run's own setting: ``objective_clean`` and
``activation`` on the untransformed image at the size the run fed the network, the
diversity metric on the same images, and the report says what ``objective`` includes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from featviz.app.report.html import Links, Page, render_page
from featviz.app.report.runs import experiment_name
from featviz.app.report.tables import Row, all_metrics, default_columns
from featviz.metrics.callback import MetricsCallback
from featviz.objectives import channel
from featviz.params import FFTImage
from featviz.render import render
from featviz.rundir import JobRecord
from featviz.transforms import build_transforms

SIZE = 40


def _clean(lite0, resize: int | None) -> tuple[float, torch.Tensor]:
    objective = channel("blocks.3", 5)
    metrics = MetricsCallback(views=0)
    result = render(lite0, objective, param=FFTImage(SIZE), transforms=build_transforms(jitter=2, resize=resize),
                    steps=3, device="cpu", callbacks=[metrics])
    return result.final["objective_clean"], result.images


def test_objective_clean_without_resize_is_measured_at_the_runs_own_size(lite0) -> None:
    clean, images = _clean(lite0, None)
    objective = channel("blocks.3", 5)
    with torch.no_grad():
        own = float(objective(lite0(images, objective.layers)).mean())
        at_224 = float(objective(lite0(F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False), objective.layers)).mean())
    assert clean == own
    assert clean != at_224


def test_objective_clean_with_resize_is_measured_at_the_model_input(lite0) -> None:
    clean, images = _clean(lite0, lite0.input_size)
    objective = channel("blocks.3", 5)
    with torch.no_grad():
        at_input = float(objective(lite0(F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False), objective.layers)).mean())
    assert clean == at_input


def _row(values: dict[str, float]) -> Row:
    return Row(jobs=["0"], labels={"regularizer.diversity": "20"}, status="completed", values=values, stds={}, n=1)


def test_the_report_table_shows_diversity_and_the_unit_alone() -> None:
    rows = [_row({"objective": 30.0, "objective_main": 41.0, "diversity": 0.4})]
    columns = default_columns(all_metrics(rows))
    assert columns[:3] == ["objective", "objective_main", "diversity"]
    page = Page(title="t", sweeps=[], grids=[], rows=rows, label_keys=["regularizer.diversity"], columns=columns, links={}, curves=[])
    html = render_page(page)
    assert "<th>diversity</th>" in html and "<th>objective_main</th>" in html
    assert "plus the diversity / alignment terms" in html
    plain = Page(title="t", sweeps=[], grids=[], rows=[_row({"objective": 30.0})], label_keys=[], columns=["objective"], links={"x": Links()}, curves=[])
    assert "objective_main" not in render_page(plain)


def test_the_report_title_names_the_experiment(tmp_path) -> None:
    runs = [JobRecord(job=str(i), folder=tmp_path, status="completed", overrides=["+experiment=frequency", f"regularizer=r{i}"]) for i in range(2)]
    assert experiment_name(runs) == "frequency"
    assert experiment_name([JobRecord(job="0", folder=tmp_path, status="completed", overrides=["steps=4"])]) is None
