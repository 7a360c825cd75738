"""How many CPU threads a render takes, and how its OpenMP threads wait.

Two findings on a 2-core machine shared with other work (docs/performance.md, "A busy
machine"): torch's own default (one OpenMP thread per core, each spinning while it waits for
the others) collapses when another process holds a core, because a spinning thread burns the
time slice its descheduled partner needs; and the cores a process may use are often fewer
than ``os.cpu_count()`` (an affinity mask, a cgroup CPU quota in a container, a Slurm
allocation). So ``import featviz`` makes OpenMP threads spin only briefly before they sleep
(``OMP_WAIT_POLICY=PASSIVE``, ``GOMP_SPINCOUNT=10000``, set in ``featviz/__init__.py`` before
torch loads) and the default ``threads=auto`` takes the cores the process may use
(:func:`auto_threads`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger("featviz")


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (``cpu.max``, cgroup v2), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """The cores this process may run on: the affinity mask, capped by a cgroup quota and by
    ``SLURM_CPUS_PER_TASK`` when either is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpus()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cores = min(cores, int(slurm))
    return max(1, cores)


def idle_cores() -> int:
    """Cores not busy now: the usable cores less the 1-minute load average, rounded, at least 1.

    On a 2-core machine with another job running, two torch threads were measured 6x slower
    than one (they wait on each other at every parallel region); a job that takes only the
    idle cores avoids that.
    """
    cores = usable_cores()
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def auto_threads() -> int:
    """``threads=auto``: the usable cores when OpenMP threads sleep while they wait (featviz's
    default, ``OMP_WAIT_POLICY=PASSIVE`` after a short ``GOMP_SPINCOUNT``), the idle ones when
    they spin.

    Sleeping threads share a busy core fairly, so two of them beside two CPU hogs still ran
    faster than one (docs/performance.md); spinning threads collapse there, so a user who
    asked for spinning gets only the cores the load average leaves idle.
    """
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        return usable_cores()
    return idle_cores()


def set_threads(threads: int | str | None) -> None:
    """Apply the ``threads`` config: a count, ``auto`` (:func:`auto_threads`), or None (torch's default)."""
    import torch

    from featviz.errors import ConfigError

    if threads is None:
        return
    if threads == "auto":
        threads = auto_threads()
        log.info("threads=auto: %d torch thread(s) (usable cores %d, load average %.1f)", threads, usable_cores(), os.getloadavg()[0])
    try:
        count = int(threads)
    except (TypeError, ValueError):
        raise ConfigError(f"threads={threads!r} must be a whole number >= 1, auto (the usable cores) or null for torch's default") from None
    if count < 1:
        raise ConfigError(f"threads={threads} must be >= 1, auto (the usable cores) or null for torch's default")
    torch.set_num_threads(count)
