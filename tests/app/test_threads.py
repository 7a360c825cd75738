"""threads=auto takes the usable cores (the idle ones when OpenMP threads spin); a bad value is one line."""

from __future__ import annotations

import os

import pytest
import torch

from featviz.app import threads as threads_module
from featviz.app.threads import idle_cores, set_threads
from featviz.errors import ConfigError


def test_auto_takes_the_usable_cores_or_with_spinning_threads_the_idle_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))  # oversubscribed
        assert idle_cores() == 1
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert idle_cores() == cores
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # spinning threads: only the idle cores
        set_threads("auto")
        assert torch.get_num_threads() == cores
        monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
        set_threads("auto")
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # featviz's default: sleeping threads share a busy core
        set_threads("auto")
        assert torch.get_num_threads() == min(cores, threads_module.usable_cores())
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", ["many", 0, -2])
def test_bad_thread_counts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="threads="):
        set_threads(bad)  # type: ignore[arg-type]


def test_usable_cores_honours_the_cgroup_quota_and_slurm(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featviz.app import threads

    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores
    assert threads.cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpus(tmp_path) is None
    assert threads.cgroup_cpus(tmp_path / "absent") is None
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: 0.5)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert threads.usable_cores() == 1  # a quota under one core still runs one thread
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: None)
    assert threads.usable_cores() == affinity
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert threads.usable_cores() == 1
