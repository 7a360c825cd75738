"""Runs every row of the table in docs/errors.md: each mistake gets its documented one line and exit code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import REPO, run_cli

ROW = re.compile(r"^\| `featviz (?P<args>[^`]+)` \| (?P<exit>\d+) \| `(?P<answer>[^`]+)` \|$")


def table_rows() -> list[tuple[str, int, str]]:
    rows = [(m["args"], int(m["exit"]), m["answer"]) for line in (REPO / "docs" / "errors.md").read_text().splitlines() if (m := ROW.match(line))]
    assert len(rows) >= 12, "the table of docs/errors.md was not found"
    return rows


@pytest.mark.parametrize(("args", "code", "answer"), table_rows(), ids=[r[0] for r in table_rows()])
def test_each_documented_mistake_gets_its_line(tmp_path: Path, args: str, code: int, answer: str) -> None:
    folder, file = tmp_path / "d", tmp_path / "file"
    folder.mkdir()
    file.write_text("x")
    fill = lambda text: text.replace("DIR", str(folder)).replace("FILE", str(file))  # noqa: E731
    proc = run_cli(*(fill(a) for a in shlex.split(args)))
    lines = [line for line in proc.stderr.splitlines() if line.startswith("featviz")]
    assert proc.returncode == code and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    at = 0
    for part in fill(answer).split("..."):  # "..." in the table: text that depends on the machine
        found = lines[0].find(part, at)
        assert found >= 0, f"{part!r} not in {lines[0]!r}"
        at = found + len(part)
