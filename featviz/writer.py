"""RunWriter: the callback that writes a run's files (snapshots, metrics.jsonl, final.png, result.json) inside its folder."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import torch

from featviz.callbacks import Callback, RenderContext, RenderResult, StepRecord
from featviz.errors import OutputError, Preempted
from featviz.images import atomic_write_bytes, save_json, save_png
from featviz.rundir import FINAL_IMAGE, RESULT_NAME, read_step_records

log = logging.getLogger("featviz")


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn an OS error while writing ``target`` into one :class:`OutputError` that says what to do."""
    try:
        yield
    except OSError as exc:
        raise OutputError(
            f"cannot write {exc.filename or target}: {exc.strerror or exc}; free disk space or choose a writable "
            f"output folder (hydra.run.dir); the files already there are complete"
        ) from exc


def inside(root: str | Path, *parts: str) -> Path:
    """``root/parts...``, refused if it resolves outside ``root``.

    File names built from config values go through here, so a value such as ``../../x`` or
    a symlink planted in the run folder cannot make a run write somewhere else.
    """
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base):
        raise OutputError(f"refusing to write {path}: it is outside the run folder {base}; use a plain file name")
    return path


def _keep_steps_before(path: Path, step: int) -> None:
    """Drop the lines of ``metrics.jsonl`` at or after ``step`` (a resumed loop records them again)."""
    if not path.is_file():
        return
    data = "".join(line + "\n" for at, _, line in read_step_records(path) if at < step).encode()
    atomic_write_bytes(path, lambda f: f.write(data))


class RunWriter(Callback):
    """Writes images, per-step metrics and ``result.json`` into ``out_dir``."""

    def __init__(self, out_dir: str | Path, config: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.config = dict(config or {})
        self.extra = dict(extra or {})
        self._metrics: IO[str] | None = None
        self.last_step = -1
        self.reported = False  # result.json written for this run

    def on_start(self, ctx: RenderContext) -> None:
        path = inside(self.out_dir, "metrics.jsonl")
        with _writing(path):
            inside(self.out_dir, "snapshots").mkdir(parents=True, exist_ok=True)
            if ctx.start_step > 0:
                _keep_steps_before(path, ctx.start_step)
            self._metrics = open(path, "a" if ctx.start_step > 0 else "w", encoding="utf-8")

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        assert self._metrics is not None
        line = {"step": record.step, **record.metrics}
        if len(record.per_image) > 1:
            line["per_image"] = record.per_image
        with _writing(self.out_dir / "metrics.jsonl"):
            self._metrics.write(json.dumps(line) + "\n")
            self._metrics.flush()
        self.last_step = record.step
        if record.snapshot:
            self.save_snapshot(record)

    def save_snapshot(self, record: StepRecord) -> None:
        self._save_png(record.images, "snapshots", f"step_{record.step}.png")
        if record.images.shape[0] > 1:
            for i, img in enumerate(record.images):
                self._save_png(img, "snapshots", f"step_{record.step}", f"{i}.png")

    def _save_png(self, images: torch.Tensor, *parts: str) -> None:
        path = inside(self.out_dir, *parts)
        with _writing(path):
            save_png(images, path)

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        with _writing(self.out_dir / "metrics.jsonl"):
            self._close()
        for i, img in enumerate(result.images):
            self._save_png(img, f"final_{i}.png")
        self._save_png(result.images, FINAL_IMAGE)
        # Images other callbacks hand over by name (the RGBA param's alpha map, featviz.regularizers.alpha).
        for name, images in ctx.extra.get("images", {}).items():
            self._save_png(images, f"{name}.png")
        with _writing(self.out_dir / RESULT_NAME):
            self.write_result("completed", result.final, steps_done=result.steps)

    def on_error(self, ctx: RenderContext, error: BaseException, step: int) -> None:
        with suppress(OSError):  # a line the full disk refused; the error that stopped the run says why
            self._close()
        self.fail(error, steps_done=step)

    def fail(self, error: BaseException, steps_done: int) -> None:
        """Record why the run stopped in ``result.json``; if even that cannot be written, carry on.

        Called while an exception is on its way up: raising here would hide it, and on a
        full disk even a log line to the run folder's log file would fail, so the app's own
        one-line error is the report.
        """
        if isinstance(error, Preempted) and error.signal_name != "SIGINT":
            status = "preempted"
        elif isinstance(error, (KeyboardInterrupt, Preempted)):
            status = "interrupted"
        else:
            status = "failed"
        err = {"type": type(error).__name__, "message": str(error), "traceback": "".join(traceback.format_exception(error, limit=8))}
        try:
            self.write_result(status, {}, steps_done=steps_done, error=err)
        except OSError as exc:
            log.debug("could not record the %s run in %s: %s", status, self.out_dir / RESULT_NAME, exc.strerror or exc)

    def write_result(self, status: str, final: Mapping[str, Any], steps_done: int, error: Mapping[str, Any] | None = None) -> None:
        result: dict[str, Any] = {"status": status, "steps_done": steps_done, "final": dict(final), **self.extra, "config": self.config}
        if error:
            result["error"] = dict(error)
        save_json(result, inside(self.out_dir, RESULT_NAME))
        self.reported = True

    def _close(self) -> None:
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.close()
