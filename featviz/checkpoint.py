"""Checkpoints of the render loop: survive preemption and resume to the same bytes.

A render on a shared machine can be stopped at any moment: Slurm preempts a job or runs
out its time (sending a signal first), someone types ``kill``, the OOM killer strikes.
:class:`Checkpointer` writes the loop's whole state to ``checkpoint.pt`` in the run folder

* every ``every`` steps, so a hard kill (SIGKILL, power loss) loses at most that many;
* at the first step boundary after SIGTERM, SIGINT (Ctrl-C), SIGUSR1 or SIGUSR2 (submitit's preemption
  signal), so a polite stop loses nothing. The handler itself only sets a flag: saving
  inside a signal handler could catch the loop half-way through an optimizer update.

After saving on a signal it defers to whoever handled that signal before the render:
under submitit that handler requeues the job (the requeued job finds the checkpoint) or
deliberately ignores the signal (submitit ignores SIGTERM); with no Python handler the
render stops with :class:`Preempted`, which the app reports as "preempted, rerun to resume".

:func:`restore` (``render(..., resume_from=...)``) puts back the parameter, the optimizer's
moments, the generator that drives every random transform, the step and the metrics so far.
The resumed loop then computes exactly the numbers the uninterrupted one would have: on CPU
its final image is byte-identical. State is saved as plain tensors and containers and loaded
with ``weights_only=True``, so opening a checkpoint cannot execute code.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from featviz.callbacks import Callback, RenderContext, RenderResult
from featviz.errors import CheckpointError, ConfigError, OutputError, Preempted
from featviz.images import atomic_write_bytes
from featviz.render import load_state, loop_state
from featviz.rundir import CHECKPOINT_NAME, RESULT_NAME, read_json

log = logging.getLogger("featviz")

SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")
# Config keys that change how a run is watched, not what it computes: a run folder may be
# resumed with different values for them.
WATCH_KEYS = ("logger", "progress", "tags", "checkpoint_every")

Handler = Callable[[int, FrameType | None], Any] | int | None


def yield_to_signal(signum: int, previous: Handler, step: int, steps: int, path: Path) -> None:
    """Do with a stop signal caught at ``step`` what the handler before ours (``previous``) would have.

    Ignored: nothing. A Python handler (submitit: requeue and exit, or log and carry on): run
    it; if it exits, :class:`Preempted` with its exit code, ``handed_over``. Default: Preempted
    with ``128 + signum``, the code the signal itself would have ended the process with.
    ``path`` is where the state was saved, for the message.
    """
    name = signal.Signals(signum).name
    if previous == signal.SIG_IGN:
        return
    if callable(previous) and previous is not signal.default_int_handler:
        try:
            previous(signum, None)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            raise Preempted(name, step, steps, path, code, handed_over=True) from exc
        return
    raise Preempted(name, step, steps, path, 128 + signum)


class StopLatch:
    """The process's one set of stop-signal handlers, shared by every :class:`Checkpointer` of a pack.

    A pack's jobs each have a checkpointer, but a signal has one handler. The first
    checkpointer to join installs it (remembering the handlers before: submitit's requeue,
    Python's Ctrl-C); the signal only sets a flag; each checkpointer saves at its job's next
    step boundary, and the last one to save lets the signal take its course (the earlier
    ones' jobs then stop at the step they saved, or one later, which they redo on resume).
    The last to leave puts the handlers back.
    """

    def __init__(self) -> None:
        self.members: set[Checkpointer] = set()
        self.saved: dict[Checkpointer, int] = {}  # member -> the step it saved at since the signal
        self.previous: dict[int, Handler] = {}
        self.received: int | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        self.saved.clear()

    def join(self, member: Checkpointer) -> None:
        if not self.members:
            if threading.current_thread() is not threading.main_thread():
                log.debug("not in the main thread: checkpoints only every %d steps, no signal handling", member.every)
            else:
                self.previous = {sig: signal.signal(sig, self._on_signal) for sig in member.signals}
        self.members.add(member)

    def leave(self, member: Checkpointer) -> int | None:
        """Take ``member`` out; when it was the last, restore the handlers and return a signal still pending."""
        self.members.discard(member)
        self.saved.pop(member, None)
        if self.members:
            return None
        for sig, previous in self.previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self.previous = {}
        received, self.received = self.received, None
        return received

    def pending_for(self, member: Checkpointer) -> bool:
        return self.received is not None and member not in self.saved

    def all_saved(self) -> bool:
        """A signal is pending and every member has saved since it came."""
        return self.received is not None and self.saved.keys() >= self.members


#: The latch of this process (signals are per process).
LATCH = StopLatch()


class Checkpointer(Callback):
    """Saves the loop's state every ``every`` steps (0: only on signals) and on SIGTERM/SIGINT/SIGUSR1/SIGUSR2.

    Put it *last* in the callback list: it may end the run from ``on_after_update``, after
    every other callback has seen the step. The checkpoint is deleted when the run completes.
    In a pack (:func:`featviz.render.render_pack`) every job's checkpointer saves before the
    signal takes its course (:class:`StopLatch`).

    Args:
        path: the checkpoint file, normally ``<run dir>/checkpoint.pt``.
        every: save after every ``every`` optimizer updates; 0 saves only on a signal.
        meta: stored alongside (the app stores the run's config to check a resume against it).
        signals: names of the signals that mean "save and stop"; handlers are installed only
            in the main thread, where Python delivers signals.
    """

    def __init__(self, path: str | os.PathLike[str], every: int = 0, meta: Mapping[str, Any] | None = None, signals: Iterable[str] = SIGNALS) -> None:
        try:
            self.every = int(every)
        except (TypeError, ValueError):
            raise ConfigError(f"checkpoint_every={every!r} must be a whole number of steps (0 saves only when the job is told to stop)") from None
        if self.every < 0:
            raise ConfigError(f"checkpoint_every={every} must be >= 0 (0 saves only when the job is told to stop)")
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]

    def _yield_to_signal(self, ctx: RenderContext) -> None:
        """Let the received signal take its course now that every job's state is safe on disk."""
        signum, step = LATCH.received, LATCH.saved[self]
        assert signum is not None
        previous = LATCH.previous.get(signum, signal.SIG_DFL)
        LATCH.received = None
        LATCH.saved.clear()
        try:
            yield_to_signal(signum, previous, step, ctx.steps, self.path)
        except Preempted:
            LATCH.leave(self)
            raise

    # --- callback hooks ---------------------------------------------------------------
    def on_start(self, ctx: RenderContext) -> None:
        LATCH.join(self)

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        if LATCH.pending_for(self):
            self.save(ctx, step)
            log.info("%s received: state at step %d saved to %s", signal.Signals(LATCH.received).name, step, self.path)
            LATCH.saved[self] = step
        elif self.every and step % self.every == 0 and step < ctx.steps:
            self.save(ctx, step)
        if LATCH.all_saved():
            self._yield_to_signal(ctx)

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        self.path.unlink(missing_ok=True)  # the run's files now say everything a checkpoint could
        received = LATCH.leave(self)
        if received is not None:  # the last job is complete: the signal now does what it would have done
            signal.raise_signal(received)

    def on_error(self, ctx: RenderContext, error: BaseException, step: int) -> None:
        LATCH.leave(self)

    def save(self, ctx: RenderContext, step: int) -> None:
        """Write the state after ``step`` updates (atomically: a kill mid-write keeps the previous one)."""
        state = {**loop_state(ctx, step), "meta": self.meta}
        try:
            atomic_write_bytes(self.path, lambda f: torch.save(state, f))
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            raise OutputError(
                f"cannot write the checkpoint {self.path} ({getattr(exc, 'strerror', None) or str(exc).splitlines()[0]}); "
                f"free disk space, or set checkpoint_every=0 to checkpoint only on signals"
            ) from None


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = WATCH_KEYS) -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (keys under ``ignore`` skipped)."""
    skip = tuple(ignore)
    a, b = _flatten(old), _flatten(new)
    keys = sorted(k for k in a.keys() | b.keys() if k.split(".")[0] not in skip and a.get(k, "<unset>") != b.get(k, "<unset>"))
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys]


@dataclass
class ResumePoint:
    """What a run folder already holds for a config: a finished result, a checkpoint, or nothing."""

    completed: dict[str, Any] | None = None  # result.json of a completed run of this config
    state: dict[str, Any] | None = None  # checkpoint to continue from

    @property
    def step(self) -> int:
        return int(self.state["step"]) if self.state is not None else 0


def find_resume_point(run_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> ResumePoint:
    """Decide how a (re)run of ``config`` in ``run_dir`` starts.

    A completed run of the same config needs nothing (a sweep rerun skips its finished
    jobs); a checkpoint of the same config is continued; a folder holding a different
    config's run is refused rather than silently mixed or overwritten.
    """
    run_dir = Path(run_dir)
    result_path = run_dir / RESULT_NAME
    if result_path.is_file():
        result = read_json(result_path) or {}
        if result.get("status") == "completed":
            diff = config_differences(result.get("config") or {}, config)
            if diff:
                raise CheckpointError(
                    f"{run_dir} already holds a completed run of another config ({'; '.join(diff[:5])}); choose a new output folder (hydra.run.dir, or hydra.sweep.dir for a sweep)"
                )
            return ResumePoint(completed=result)
    ckpt = run_dir / CHECKPOINT_NAME
    if not ckpt.is_file():
        return ResumePoint()
    state = load_state(ckpt)
    diff = config_differences(state.get("meta", {}).get("config") or {}, config)
    if diff:
        raise CheckpointError(
            f"{ckpt} was written by another config ({'; '.join(diff[:5])}); rerun with that config to resume, or delete the file to start over"
        )
    return ResumePoint(state=state)
