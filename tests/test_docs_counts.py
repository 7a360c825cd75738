"""The counts a page states beside a sweep command (``# 24 jobs in 2 packs``) are what that command prints.

A page's count went stale once (docs/ablations.md said "24 jobs, one pack" where the run gave 2
packs). Here every ``python -m featviz -m ...`` command of the pages below whose comment states
a number of jobs (and of packs) is run as written, at a tiny size that changes no count (2 steps,
32 px, no metrics, on the CPU, whose pack cap the page's counts are for), and the sweep's last
line, ``featviz: sweep of N jobs in M packs (...)``, must say the same.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import REPO, run_cli

PAGES = ("docs/ablations.md", "docs/metrics_and_report.md")
#: Overrides that shrink a job without changing how many jobs there are or how they pack.
TINY = ["steps=2", "snapshots=[2]", "param.size=32", "metrics.views=0", "metrics.eval_model=null", "logger=none", "progress=false", "device=cpu"]
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4}


def stated(page: str) -> list[tuple[list[str], int, int | None]]:
    """Each sweep command of ``page``'s bash blocks with the jobs and packs its comment states."""
    text = (REPO / page).read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command, _, comment = line.partition("#")
            jobs = re.search(r"(\d+) jobs", comment)
            if not command.strip().startswith("python -m featviz -m") or jobs is None:
                continue
            packs = re.search(r"(\d+|one|two|three|four) packs?\b", comment)
            count = None if packs is None else int(WORDS.get(packs.group(1), packs.group(1)))
            found.append((shlex.split(command)[3:], int(jobs.group(1)), count))
    return found


CASES = [(page, args, jobs, packs) for page in PAGES for args, jobs, packs in stated(page)]


def test_the_pages_state_counts_to_check():
    assert any(page == "docs/ablations.md" and packs is not None for page, _, _, packs in CASES)


@pytest.mark.parametrize("page, args, jobs, packs", CASES, ids=[f"{c[0]}:{' '.join(c[1])[:60]}" for c in CASES])
def test_a_stated_count_is_what_the_command_prints(page: str, args: list[str], jobs: int, packs: int | None, tmp_path: Path) -> None:
    proc = run_cli("-m", *args, *TINY, f"hydra.sweep.dir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("featviz: sweep of ")]
    printed = re.match(r"featviz: sweep of (\d+) jobs?(?: in (\d+) packs?)?", line)
    assert printed is not None, line
    assert int(printed.group(1)) == jobs, f"{page} states {jobs} jobs; the command prints: {line}"
    if packs is not None:
        assert printed.group(2) is not None and int(printed.group(2)) == packs, f"{page} states {packs} pack(s); the command prints: {line}"
