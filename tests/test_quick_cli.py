"""``featviz.render(model, "layer:unit")`` is the command line: the same options give the same PNG bytes."""

from __future__ import annotations

from pathlib import Path

import featviz
from conftest import run_cli
from featviz.images import save_png


def test_the_notebook_call_and_the_command_line_write_the_same_png(tmp_path: Path) -> None:
    result = featviz.render("efficientnet_lite0", "blocks.10:3", size=32, steps=3, progress=False)
    save_png(result.images, tmp_path / "notebook.png")
    run = run_cli("objective.unit=3", "logger=none", "param.size=32", "steps=3", "progress=false", f"hydra.run.dir={tmp_path / 'cli'}")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "cli" / "final.png").read_bytes() == (tmp_path / "notebook.png").read_bytes()
