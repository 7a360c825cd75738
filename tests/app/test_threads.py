"""threads=auto takes the idle cores; a bad value is one line."""

from __future__ import annotations

import os

import pytest
import torch

from featviz.app.job import idle_cores, set_threads
from featviz.errors import ConfigError


def test_auto_takes_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))  # oversubscribed
        assert idle_cores() == 1
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert idle_cores() == cores
        set_threads("auto")
        assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", ["many", 0, -2])
def test_bad_thread_counts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="threads="):
        set_threads(bad)  # type: ignore[arg-type]
