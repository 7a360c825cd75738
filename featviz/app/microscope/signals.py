"""Stop signals across a whole shard: at the next step of a batch, or between two batches."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from featviz.callbacks import Callback, RenderContext
from featviz.checkpoint import SIGNALS, Handler, yield_to_signal


class StopSignals(Callback):
    """A stop signal (SIGTERM, Slurm's USR2, Ctrl-C) ends the shard at the next step or between batches.

    Installed for the whole shard, not per render, so a signal between two batches is caught
    too. The batch it stops is rendered again on the rerun (its finished ones are on disk),
    so no loop state is saved; the signal then takes its course (:func:`yield_to_signal`:
    submitit's requeue under Slurm).
    """

    def __init__(self, saved_in: Path) -> None:
        self.saved_in = saved_in  # where the finished batches are, for the message
        self.received: int | None = None
        self.previous: dict[int, Handler] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                if hasattr(signal, name):
                    self.previous[getattr(signal, name)] = signal.signal(getattr(signal, name), self._on_signal)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.received = signum

    def check(self, step: int = 0, steps: int = 0) -> None:
        if self.received is not None:
            signum, self.received = self.received, None
            yield_to_signal(signum, self.previous.get(signum, signal.SIG_DFL), step, steps, self.saved_in)

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        self.check(step, ctx.steps)
