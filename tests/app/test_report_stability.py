"""seed_stability in the report: identical seeds score 1, different images less."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featviz.app.report.stability import add_seed_stability
from featviz.app.report.tables import make_rows
from featviz.images import save_png
from featviz.rundir import JobRecord


def _run(root: Path, job: str, seed: int, image: torch.Tensor) -> JobRecord:
    folder = root / job
    folder.mkdir()
    save_png(image, folder / "final.png")
    return JobRecord(job, folder, "completed", [f"seed={seed}", "param=fft" if job < "2" else "param=pixel"], final={"objective": 1.0}, final_image=folder / "final.png")


def test_identical_seeds_are_fully_stable_and_noise_is_not(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0, 1, 64).view(1, 1, 64).expand(3, 64, 64).contiguous()
    runs = [
        _run(tmp_path, "0", 0, smooth),
        _run(tmp_path, "1", 1, smooth),
        _run(tmp_path, "2", 0, torch.rand(3, 64, 64, generator=gen)),
        _run(tmp_path, "3", 1, torch.rand(3, 64, 64, generator=gen).roll(17, 1)),
    ]
    rows = make_rows(runs, ["seed", "param"], mean_over=["seed"])
    add_seed_stability(rows, runs, "efficientnet_lite0")
    by_param = {row.labels["param"]: row.values["seed_stability"] for row in rows}
    assert by_param["fft"] == pytest.approx(1.0, abs=1e-6)
    assert by_param["pixel"] < 1.0
