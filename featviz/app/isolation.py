"""Run a job in a child process, so a crash in native code fails that job and not the sweep.

A segfault, an abort in a C++ kernel or the kernel's OOM killer ends the process it hits;
in-process, that is the whole sweep under the basic launcher, and under joblib or submitit
the launcher's wait for results (its pool breaks, or ``job.results()`` raises), so the
later jobs and ``summary.json`` never happen. With ``isolate`` on, the job's render runs in
a child and this process only waits: a child that dies of a signal is recorded in the run's
``result.json`` as ``failed`` (what it wrote before, snapshots and checkpoint, is kept) and
reported as one :class:`JobCrashed` line, which the entry point treats like any failed job.

Children come from a fork server that has imported torch but never run a kernel: forking
the job process itself after torch's thread pool has run hangs the child (OpenMP is not
fork-safe), and a fresh interpreter per job would pay the imports again.

Stop signals (those the checkpointer handles) sent to this process are passed on, and the
child treats them as this process would have in-process: a signal this process ignores is
ignored there; one with a Python handler here (submitit's requeue on SIGUSR2) makes the
child checkpoint and hand the signal back, and that handler then runs here.

The supervisor contract, both ways:

* A child dies with its job process. The child's parent is the fork server, not the job
  process, so ``PR_SET_PDEATHSIG`` would watch the wrong process; instead the child holds
  the read end of a pipe only the job process can write to, and a thread waits on it. When
  the job process dies, even of SIGKILL, the pipe reads end-of-file and the child gets
  SIGTERM (it checkpoints and stops, like a preempted job), then SIGKILL after
  :data:`ORPHAN_GRACE_S` if it has not ended by then (it ignores SIGTERM).
* A sweep's parent passes SIGTERM on to its job processes and says so
  (:func:`forwarding_stops_to_jobs`): under joblib the jobs are its worker processes, which
  the default action would leave rendering unsupervised.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from featviz.app.config import environ_set
from featviz.checkpoint import SIGNALS
from featviz.errors import FeatvizError, Preempted
from featviz.images import save_json
from featviz.rundir import METRICS_NAME, RESULT_NAME, read_json, read_step_records

log = logging.getLogger("featviz")

#: Imported by the fork server once, so each child starts with them loaded: what a job imports
#: (torch ~2 s, wandb ~0.7 s). ``torch._dynamo`` is not among them: featviz's optimizers never
#: import it (featviz.optimizers), and a job with ``perf.compile`` imports it itself.
PRELOAD = [
    "torch",
    "featviz.app.job",
    "featviz.app.build",
    "featviz.render",
    "featviz.checkpoint",
    "featviz.writer",
    "featviz.progress",
    "featviz.metrics.activation",
    "featviz.app.tracking",
    "wandb",
    "wandb.sdk.launch.inputs.internal",  # what wandb.init imports on every run (~0.4 s)
    "featviz.app.shared_model",  # last: builds the network its environment names (featviz.app.shared_model)
]
FORWARDED = tuple(getattr(signal, name) for name in SIGNALS if hasattr(signal, name))
#: The child's exit from a handed-back signal, as the checkpointer sees it.
HAND_BACK = 75
#: Seconds an orphaned child gets to checkpoint after its SIGTERM before it is killed.
ORPHAN_GRACE_S = 60.0


class JobCrashed(FeatvizError):
    """The job's child process died of a signal (a crash in native code, or a kill)."""


def _log_files() -> list[str]:
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def _hand_back(signum: int, _frame: object) -> None:
    """In the child, in place of the job process's own Python handler: end, and let it run there."""
    raise SystemExit(HAND_BACK)


def _dispositions() -> dict[int, str]:
    """How this process treats each stop signal now: ``ignore``, ``python`` (a handler) or ``default``."""
    found = {}
    for sig in FORWARDED:
        handler = signal.getsignal(sig)
        found[sig] = "ignore" if handler == signal.SIG_IGN else "python" if callable(handler) and handler is not signal.default_int_handler else "default"
    return found


def _die_with(parent_alive: Connection) -> None:
    """Wait for the job process's end of ``parent_alive`` to close (it died), then end this process."""

    def watch() -> None:
        try:
            parent_alive.recv_bytes()
        except (EOFError, OSError):
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(ORPHAN_GRACE_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="featviz-orphan-watch", daemon=True).start()


def _child(send: Connection, parent_alive: Connection, target: Callable[..., Any], args: tuple[Any, ...], log_files: list[str], dispositions: dict[int, str]) -> None:
    """The child's body: log where the parent logs, run ``target``, send back how it ended."""
    _die_with(parent_alive)
    for sig, how in dispositions.items():
        if how != "default":
            signal.signal(sig, signal.SIG_IGN if how == "ignore" else _hand_back)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for path in log_files:
        handler = logging.FileHandler(path)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    try:
        outcome: tuple[str, Any] = ("ok", target(*args))
    except (FeatvizError, Preempted) as exc:
        outcome = ("raised", exc)
    except BaseException as exc:  # noqa: BLE001 - anything else is reported by type and message
        outcome = ("error", (type(exc).__name__, str(exc), traceback.format_exc(limit=8)))
    send.send(outcome)
    send.close()


@contextmanager
def _forwarding(process: multiprocessing.process.BaseProcess, previous: dict[int, Any]) -> Iterator[None]:
    """While the child runs, a stop signal to this process is passed on to it instead.

    ``previous`` is filled with the handlers this process had, restored on the way out.
    """

    def forward(signum: int, _frame: object) -> None:
        if process.pid is not None:
            os.kill(process.pid, signum)

    previous.update({sig: signal.signal(sig, forward) for sig in FORWARDED})
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_handed_back(stop: Preempted, handler: Callable[[int, Any], Any]) -> Preempted:
    """Run this process's own handler of the signal the child handed back (as the
    checkpointer does in-process); what it exits with becomes the stop's exit code. A handler
    that returns (submitit only logs a SIGTERM: Slurm's ``scancel``, or the kill before a
    requeue) requeued nothing: the stop is the signal's own, rerun to resume."""
    signum = getattr(signal, stop.signal_name)
    try:
        handler(signum, None)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        return Preempted(stop.signal_name, stop.step, stop.steps, stop.path, code, handed_over=True)
    return Preempted(stop.signal_name, stop.step, stop.steps, stop.path, 128 + signum, handed_over=False)


@contextmanager
def _standard_start_method() -> Iterator[None]:
    """Name a standard start method while a child starts.

    The child is told the parent's default start method and sets it; inside a joblib (loky)
    worker that is ``loky``, which a fork-server child does not know, so it would die at once.
    """
    current = multiprocessing.get_start_method(allow_none=True)
    if current is None or current in multiprocessing.get_all_start_methods():
        yield
        return
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(current, force=True)


def _last_step(out_dir: Path) -> int:
    """The last step ``metrics.jsonl`` recorded (0 when none): how far the dead run got."""
    return max((step for step, _, _ in read_step_records(out_dir / METRICS_NAME)), default=0)


def mark_crashed(out_dir: Path, reason: str, record: dict[str, Any]) -> None:
    """Record a run whose process died in ``result.json``.

    ``record`` holds what the job would have written itself (overrides, config); a result the
    child already wrote (e.g. its own failure) is kept, only its status and error change.
    """
    path = out_dir / RESULT_NAME
    result = read_json(path) or {"final": {}, "steps_done": _last_step(out_dir), **record}
    if result.get("status") == "completed":
        return
    result.update(status="failed", error={"type": "JobCrashed", "message": reason, "traceback": ""})
    save_json(result, path)


def run_isolated(
    target: Callable[..., Any], args: tuple[Any, ...], out_dir: Path, record: dict[str, Any], server_env: dict[str, str] | None = None
) -> Any:
    """``target(*args)`` in a child process; its return value, or its exception, here.

    ``target`` must be a module-level function and ``args`` picklable. A child killed by a
    signal raises :class:`JobCrashed` after ``result.json`` says so (with ``record``'s keys).
    ``server_env`` is added to the fork server's environment if this call starts the server
    (the first isolated job of the process): what it preloads may read it.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    receive, send = ctx.Pipe(duplex=False)
    alive_read, alive_write = ctx.Pipe(duplex=False)  # held open here while this process lives (_die_with)
    process = ctx.Process(target=_child, args=(send, alive_read, target, args, _log_files(), _dispositions()), name="featviz-job")
    previous: dict[int, Any] = {}
    with _forwarding(process, previous):
        with _standard_start_method(), environ_set(server_env or {}):  # a fork server started now inherits it
            process.start()
        send.close()
        alive_read.close()
        try:
            outcome = receive.recv()
        except EOFError:  # the child died without a word
            outcome = None
        process.join()
        alive_write.close()
    if outcome is None:
        code = process.exitcode or 0
        what = f"died of {signal.Signals(-code).name}" if code < 0 else f"exited with code {code} before reporting"
        reason = f"the job's process {what} (a crash in native code, or a kill); what it saved is kept in {out_dir}"
        mark_crashed(out_dir, reason, record)
        raise JobCrashed(reason)
    kind, value = outcome
    if kind == "ok":
        return value
    if kind == "raised":
        handler = previous.get(getattr(signal, value.signal_name, -1)) if isinstance(value, Preempted) else None
        if isinstance(value, Preempted) and value.handed_over and callable(handler):
            raise _run_handed_back(value, handler)
        raise value
    name, message, trace = value
    log.error("job failed in its child process:\n%s", trace)
    raise RuntimeError(f"{name}: {message}")


def _children(parent: int | None = None) -> list[tuple[int, str]]:
    """The child processes of ``parent`` (this process) as ``(pid, command line)`` (Linux ``/proc``; none elsewhere)."""
    me, found = parent or os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == me:
                found.append((int(stat.parent.name), (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


_HELPERS = ("resource_tracker", "forkserver", "semaphore_tracker")


def job_processes(parent: int | None = None) -> list[int]:
    """The child processes of ``parent`` (this sweep) that run jobs: all but multiprocessing's and loky's helpers."""
    return sorted(pid for pid, cmdline in _children(parent) if not any(h in cmdline for h in _HELPERS))


def _renders(pid: int) -> list[int]:
    """The processes below ``pid`` that are not helpers: its isolated jobs' children (whose
    parent is a fork server below ``pid``)."""
    found = []
    for child, cmdline in _children(pid):
        found += _renders(child) if any(h in cmdline for h in _HELPERS) else [child, *_renders(child)]
    return found


def _wait_for_renders(pids: list[int]) -> None:
    """Until the isolated renders below ``pids`` have ended, at most :data:`ORPHAN_GRACE_S`:
    their result.json and checkpoint are written by then, before the launcher, seeing the
    first job stop, tears its workers down."""
    pause = threading.Event()
    for _ in range(int(ORPHAN_GRACE_S * 10)):
        if not any(_renders(pid) for pid in pids):
            return
        pause.wait(0.1)


@contextmanager
def forwarding_stops_to_jobs() -> Iterator[None]:
    """In a sweep's parent: SIGTERM is passed on to every job process, and the sweep says so.

    Each job then stops as a preempted job does (its state saved, a rerun of the same
    command resumes it), and the sweep ends with the jobs' exit. With no job process running
    (before the first or after the last) the signal takes its default course here. For a
    launcher that runs jobs in other processes only (:mod:`featviz.app.cli`): under the basic
    launcher a job runs in this process, and its own handlers stop it.
    """

    def forward(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        pids = job_processes()
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        if not pids:
            print(f"featviz: {name}: no job process is running; the sweep stops here", file=sys.stderr, flush=True)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        print(
            f"featviz: {name}: passed on to {len(pids)} job process(es) (pid {', '.join(map(str, pids))}); each saves its state and stops; "
            f"rerun the same command with the same hydra.sweep.dir to resume",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_renders(pids)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
