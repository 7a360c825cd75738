"""Hydra's own flags through featviz: combinations Hydra refuses are one line, naming the fix."""

from __future__ import annotations

from conftest import run_cli


def test_multirun_with_cfg_is_one_line_naming_the_fix() -> None:
    proc = run_cli("-m", "+experiment=spectrum", "seed=0,1", "--cfg", "job")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "drop -m" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_cfg_job_of_a_study_without_multirun_prints_its_config() -> None:
    proc = run_cli("+experiment=spectrum", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "spectrum:" in proc.stdout and "level: medium" in proc.stdout
