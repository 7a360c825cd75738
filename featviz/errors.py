"""Errors a user can cause, each with a message that names the fix.

The Hydra app catches :class:`FeatvizError`, prints its message on one line and exits
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any
from pathlib import Path


class FeatvizError(Exception):
    """Base class of every error caused by bad input rather than by a bug."""


class ConfigError(FeatvizError):
    """A config value is out of range or of the wrong kind."""


class UnknownModelError(FeatvizError):
    """The model name is not in the registry nor in torchvision."""


class UnknownLayerError(FeatvizError):
    """An objective names a layer the model does not have."""


class UnitOutOfRangeError(FeatvizError):
    """A channel, class or spatial index is past the layer's extent."""


class ImageSizeError(FeatvizError):
    """The image is too small to reach the requested layer."""


class WeightsError(FeatvizError):
    """Weights are missing, corrupt, or of the wrong architecture."""


class NonFiniteLossError(FeatvizError):
    """The loss became NaN or infinite; the run stops and keeps what it wrote."""


class DatasetError(FeatvizError):
    """An image folder is missing, empty or unreadable."""


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return the candidates most similar to ``name`` (for 'did you mean' hints)."""
    pool = list(candidates)
    close = difflib.get_close_matches(name, pool, n=n, cutoff=0.4)
    if close:
        return close
    return [c for c in pool if name.split(".")[0] in c][:n]


#: Seeds torch's CPU generator tells apart: it keeps the low 32 bits of a seed (and reads a
#: negative one as its 64-bit two's complement), so seed 2**32 draws seed 0's numbers.
SEED_RANGE = (0, 2**32 - 1)


def check_seed(seed: int, key: str = "seed") -> int:
    """``seed`` if torch's generator gives it numbers of its own, else :class:`ConfigError` naming ``key``."""
    low, high = SEED_RANGE
    if not low <= int(seed) <= high:
        raise ConfigError(
            f"{key}={seed} is outside {low}..{high}: torch's CPU generator keeps only the low 32 bits of a seed, "
            f"so it would repeat seed {int(seed) % 2**32}'s images; use a seed in that range"
        )
    return int(seed)


class CheckpointError(FeatvizError):
    """A checkpoint cannot be used for this run (unreadable, or written by another config)."""


class Preempted(Exception):
    """The render stopped on a signal after saving its state; rerunning resumes it.

    ``exit_code`` is what the process should exit with: 128 + the signal number, as if the
    signal had killed it, or the code a previous handler chose (``handed_over``: e.g.
    submitit, which has requeued the job by then, so nobody needs to rerun anything).
    """

    def __init__(self, signal_name: str, step: int, steps: int, path: Path, exit_code: int, handed_over: bool = False) -> None:
        where = f"at step {step}/{steps}"
        then = f"; the job's own {signal_name} handler ended it (under submitit: requeued, and the requeued job resumes)" if handed_over else ""
        super().__init__(f"stopped by {signal_name} {where}; the state is saved in {path}{then}")
        self.signal_name, self.step, self.steps, self.path, self.exit_code = signal_name, step, steps, path, exit_code
        self.handed_over = handed_over

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (an isolated job's child sends it to the job process)."""
        return (type(self), (self.signal_name, self.step, self.steps, self.path, self.exit_code, self.handed_over))


class OutputError(FeatvizError):
    """A run file could not be written (disk full, read-only or vanished folder) or would leave the run folder."""
