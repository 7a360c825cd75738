"""The command line's ends: a run folder name the file system refuses is one line naming the
keys to change; a finished run's last line names each objective it prints."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

SMALL = ("logger=none", "param.size=32", "steps=2", "progress=false")


def test_a_run_folder_name_longer_than_name_max_is_one_line_naming_the_keys(tmp_path: Path) -> None:
    run = run_cli(*SMALL, f"hydra.run.dir={tmp_path / ('a' * 300)}")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("featviz: error: the run folder name") and "300 bytes" in last
    assert "hydra.run.dir" in last and "hydra.job.name" in last


def test_a_sweep_subfolder_name_longer_than_name_max_is_one_line_too(tmp_path: Path) -> None:
    run = run_cli("-m", *SMALL, f"hydra.sweep.dir={tmp_path}", f"hydra.sweep.subdir={'b' * 300}")
    assert "Traceback" not in run.stderr
    assert "hydra.sweep.subdir" in run.stderr.strip().splitlines()[-1]


def test_the_last_line_names_the_untransformed_and_the_views_objective(tmp_path: Path) -> None:
    run = run_cli(*SMALL, f"hydra.run.dir={tmp_path}")
    assert run.returncode == 0, run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("featviz: final objective ") and "(untransformed image; last step's views " in last
