"""The run-folder layout and its one reader.

A run folder holds ``result.json`` (status, config, overrides, final metrics, error),
``final.png`` (or ``final_<i>.png`` per batch image), ``snapshots/step_<k>.png``,
``metrics.jsonl``, ``checkpoint.pt`` while unfinished, and ``wandb/`` when tracked. A sweep
folder holds one run folder per job (Hydra's ``<sweep>/<job number>``, each with its
``.hydra/overrides.yaml``). :func:`read_sweep` is what the report, the sweep summary and the
W&B sweep table all read a sweep through.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_NAME = "result.json"
CHECKPOINT_NAME = "checkpoint.pt"
FINAL_IMAGE = "final.png"
SNAPSHOTS_DIR = "snapshots"
METRICS_NAME = "metrics.jsonl"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"
SKIP_PARTS = frozenset({"wandb", ".submitit"})  # folders inside a sweep that hold no jobs
_STEP_FILE = re.compile(r"step_(\d+)\.png$")


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["param=pixel", "+x=1"]`` -> ``{"param": "pixel", "x": "1"}`` (order kept)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key.lstrip("+~")] = value
    return out


def job_order(job: str) -> list[tuple[int, int, str]]:
    """Job "2" before "10"; non-numeric parts after numbers, alphabetically."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in job.split("/")]


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_step_records(path: Path) -> Iterator[tuple[int, dict[str, Any], str]]:
    """Each whole record of a ``metrics.jsonl`` as ``(step, record, line)``, in file order.

    A kill can cut the last line short; such a line (or any without an integer ``step``) is
    skipped, so the writer, the crash record and the report read a dead run's file alike.
    """
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue
        yield step, record, line


def _launched_overrides(folder: Path) -> list[str] | None:
    """The overrides Hydra launched this job with (``.hydra/overrides.yaml``), if it wrote them."""
    path = folder / HYDRA_OVERRIDES
    if not path.is_file():
        return None
    import yaml  # Hydra's own file format; PyYAML comes with Hydra

    try:
        return [str(o) for o in yaml.safe_load(path.read_text(encoding="utf-8")) or []]
    except (OSError, yaml.YAMLError):
        return None


def _wandb_run_id(folder: Path) -> str | None:
    """The id of the newest W&B run in ``folder/wandb/`` (folder ``[offline-]run-<time>-<id>``)."""
    runs = sorted(p.name for p in (folder / "wandb").glob("*run-*") if p.is_dir())
    return runs[-1].rsplit("-", 1)[-1] if runs else None


@dataclass
class JobRecord:
    """What one run folder holds, as read back from disk."""

    job: str  # the folder relative to the sweep folder, e.g. "3" ("." for a single run)
    folder: Path
    status: str  # completed | failed | interrupted | ... | missing (no result.json) | stale
    overrides: list[str]
    final: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    snapshots: dict[int, Path] = field(default_factory=dict)
    final_image: Path | None = None
    wandb_run: str | None = None

    @property
    def has_result(self) -> bool:
        return self.status not in ("missing", "stale")

    @property
    def settings(self) -> dict[str, str]:
        """The overrides as ``{key: value}``."""
        return parse_overrides(self.overrides)

    @property
    def metrics(self) -> dict[str, float]:
        """The numeric final metrics."""
        return {k: float(v) for k, v in self.final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_job(folder: Path, job: str = ".") -> JobRecord:
    """Read one run folder. A job whose ``result.json`` is missing is ``missing``; one whose
    ``result.json`` was written for other overrides than Hydra launched it with is ``stale``."""
    launched = _launched_overrides(folder)
    result = read_json(folder / RESULT_NAME)
    if result is None:
        return JobRecord(job, folder, "missing", launched or [], error="no readable result.json: the job died before it could write one (killed, or its folder is not writable)")
    written = [str(o) for o in result.get("overrides") or []]
    if launched is not None and written != launched:
        return JobRecord(job, folder, "stale", launched, error=f"result.json was written by another job ({written}); this job stopped before writing its own")
    error = result.get("error") or {}
    first = str(error.get("message", "")).strip().splitlines()[:1]
    image = folder / FINAL_IMAGE
    return JobRecord(
        job=job,
        folder=folder,
        status=str(result.get("status", "unknown")),
        overrides=written,
        final=dict(result.get("final") or {}),
        error=f"{error.get('type', 'Error')}: {first[0] if first else ''}" if error else "",
        snapshots={int(m.group(1)): p for p in (folder / SNAPSHOTS_DIR).glob("step_*.png") if (m := _STEP_FILE.search(p.name))},
        final_image=image if image.is_file() else None,
        wandb_run=_wandb_run_id(folder),
    )


def read_sweep(sweep_dir: str | Path) -> list[JobRecord]:
    """Every job folder under ``sweep_dir`` (one with ``.hydra/`` or a ``result.json``), in job order.

    A single run folder given as ``sweep_dir`` is one job named ``"."``.
    """
    root = Path(sweep_dir)
    folders = {p.parent.parent for p in root.rglob(str(HYDRA_OVERRIDES))} | {p.parent for p in root.rglob(RESULT_NAME)}
    jobs = []
    for folder in folders:
        rel = folder.relative_to(root)
        if SKIP_PARTS & set(rel.parts) or (folder == root and len(folders) > 1):
            continue
        jobs.append(read_job(folder, rel.as_posix()))
    return sorted(jobs, key=lambda j: job_order(j.job))


LOCK_NAME = ".featviz.lock"


def process_start(pid: int) -> str | None:
    """An id of process ``pid`` that a later process with the same pid does not share.

    On Linux: the boot id and the process's start time (``/proc/<pid>/stat``, clock ticks
    since boot); ``""`` where there is no ``/proc`` (only liveness can be checked); None
    when the process is gone or a zombie.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # someone else's live process
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except FileNotFoundError:
        return "" if not Path("/proc/self/stat").exists() else None
    except OSError:
        return ""
    return None if fields[0] == "Z" else f"{boot}/{fields[19]}"


def runs_featviz(pid: int) -> bool | None:
    """Whether process ``pid``'s command line names featviz (``python -m featviz``, the
    ``featviz`` script, a job's child); None where there is no ``/proc`` to read it from."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None if not Path("/proc/self/cmdline").exists() else False
    except OSError:
        return None
    return any(b"featviz" in arg for arg in argv)


def _holder(text: str) -> tuple[str, int, str | None] | None:
    """``(host, pid, start id)`` from a lock file's text (``host pid`` from older versions), None if it is not a lock."""
    try:
        data = json.loads(text)
        return str(data["host"]), int(data["pid"]), str(data["started"])
    except (ValueError, KeyError, TypeError):
        host, _, pid = text.strip().partition(" ")
        return (host, int(pid), None) if host and pid.isdigit() else None


class RunLock:
    """Held by the process rendering into a run folder, so no second process shares it.

    The lock file holds the holder's host, pid and start id (:func:`process_start`). It is
    stale, and taken over, when it is empty or unreadable (a full disk), when that pid is
    gone, when the pid now belongs to a process that started later (pids are reused), or,
    for a lock without a start id (older featviz), when the live pid's command line is not
    a featviz run (:func:`runs_featviz`). A
    lock of another host (a shared file system) is trusted. The file is complete the moment
    it exists: it is written under another name and hard-linked into place.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _stale(self) -> bool:
        try:
            holder = _holder(self.path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return True  # released meanwhile
        if holder is None:
            return True
        host, pid, started = holder
        if host != socket.gethostname():
            return False
        now = process_start(pid)
        if now is None:
            return True
        if started is not None and now != "":
            return now != started  # the start time proves it is the very process that wrote the lock
        # A lock of an older featviz (no start id): a live pid proves nothing (pids are reused),
        # so the holder must be a featviz process by its command line.
        return runs_featviz(pid) is False

    def _refuse(self) -> None:
        from featviz.errors import OutputError

        holder = _holder(self.path.read_text(encoding="utf-8", errors="replace")) if self.path.is_file() else None
        who = f"{holder[0]} pid {holder[1]}" if holder else "?"
        raise OutputError(
            f"{self.path.parent} is in use by another featviz process ({who}); "
            f"wait for it to finish, or choose another folder with hydra.run.dir=..."
        )

    def _create(self) -> bool:
        """Put this process's lock file in place; False when one is there already."""
        from featviz.errors import OutputError

        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())})
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(me, encoding="utf-8")
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: create exclusively, then write
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(me)
            return True
        except OSError as exc:
            raise OutputError(f"cannot write the lock {self.path}: {exc.strerror or exc}; free disk space or choose a writable output folder (hydra.run.dir)") from None
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if self._create():
                self.held = True
                return
            if not self._stale():
                self._refuse()
            self.path.unlink(missing_ok=True)  # stale: its process is gone
        self._refuse()

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
