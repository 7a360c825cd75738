"""One CLI: ``featviz --help`` lists every subcommand, ``featviz SUB --help`` works for each."""

from __future__ import annotations

import pytest

from conftest import run_cli
from featviz.app.cli import COMMANDS, main


def test_help_lists_every_subcommand_with_one_line(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        line = next(line for line in out.splitlines() if line.strip().startswith(command.name + " "))
        assert command.summary in line
    proc = run_cli("--help")
    assert proc.returncode == 0 and "dataset-examples" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.kind != "hydra"], ids=lambda c: c.name)
def test_each_command_has_its_own_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command.name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: featviz {command.name}")
    if command.kind == "config":
        assert "KEY=VALUE" in out  # the render's overrides


@pytest.mark.parametrize("name", [c.name for c in COMMANDS if c.kind == "hydra"])
def test_hydra_commands_show_the_config_groups(name: str) -> None:
    proc = run_cli(name, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "== Configuration groups ==" in proc.stdout and "param:" in proc.stdout


def test_errors_are_one_line_with_the_command_name(tmp_path, capsys) -> None:
    assert main(["layers", "model=efficientnet_lite0", "model.name=nosuchnet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featviz layers: error:") and "nosuchnet" in err[0]
    assert main(["patch-bank", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featviz patch-bank: error:")
