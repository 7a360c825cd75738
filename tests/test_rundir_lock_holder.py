"""A lock's holder must be proven a featviz run (start time, else command line), not merely alive."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from featviz.rundir import LOCK_NAME, RunLock, runs_featviz


def _finished(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps({"status": "completed", "overrides": []}))
    return folder


def test_an_old_format_lock_naming_a_live_process_that_is_not_featviz_is_stale(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert runs_featviz(sleeper.pid) is False
        folder = _finished(tmp_path / "run")
        (folder / LOCK_NAME).write_text(f"{socket.gethostname()} {sleeper.pid}")  # a recycled pid, or an older featviz's lock
        with RunLock(folder) as lock:
            assert lock.held
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_old_format_lock_of_a_live_featviz_process_is_trusted(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "featviz"])
    try:
        assert runs_featviz(holder.pid) is True
        folder = _finished(tmp_path / "run")
        (folder / LOCK_NAME).write_text(f"{socket.gethostname()} {holder.pid}")
        try:
            RunLock(folder).acquire()
        except Exception as exc:  # noqa: BLE001 - the refusal is what is tested
            assert f"pid {holder.pid}" in str(exc)
        else:
            raise AssertionError("a live featviz holder was not trusted")
    finally:
        holder.kill()
        holder.wait()


def test_a_new_format_lock_naming_a_live_process_of_another_start_is_stale(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        folder = _finished(tmp_path / "run")
        (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid, "started": "another-boot/1"}))
        with RunLock(folder) as lock:
            assert lock.held
    finally:
        sleeper.kill()
        sleeper.wait()
