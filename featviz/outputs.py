"""The run directory: what one run leaves on disk, written as the run goes.

Layout (the names users script against)::

    final.png            batch element 0, or a grid for batches
    final_<i>.png        one per batch element
    snapshots/step_<n>.png          (grid for batches)
    snapshots/step_<n>/<i>.png      per batch element, batches only
    metrics.jsonl        one JSON line per recorded step
    result.json          status, final metrics, config, timings, environment

``metrics.jsonl`` is flushed every line and snapshots are written when they happen, so a
crash keeps everything up to it; ``result.json`` then says ``status: failed`` and why.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from featviz.images import save_json, save_png
from featviz.render import Callback, RenderContext, RenderResult, StepRecord


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
        (self.out_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        mode = "a" if ctx.start_step > 0 else "w"
        self._metrics = open(self.out_dir / "metrics.jsonl", mode, encoding="utf-8")

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        assert self._metrics is not None
        line = {"step": record.step, **record.metrics}
        if len(record.per_image) > 1:
            line["per_image"] = record.per_image
        self._metrics.write(json.dumps(line) + "\n")
        self._metrics.flush()
        self.last_step = record.step
        if record.snapshot:
            self.save_snapshot(record)

    def save_snapshot(self, record: StepRecord) -> None:
        snap = self.out_dir / "snapshots"
        save_png(record.images, snap / f"step_{record.step}.png")
        if record.images.shape[0] > 1:
            for i, img in enumerate(record.images):
                save_png(img, snap / f"step_{record.step}" / f"{i}.png")

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        self._close()
        for i, img in enumerate(result.images):
            save_png(img, self.out_dir / f"final_{i}.png")
        save_png(result.images, self.out_dir / "final.png")
        self.write_result("completed", result.final, steps_done=result.steps)

    def on_error(self, ctx: RenderContext, error: BaseException, step: int) -> None:
        self._close()
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        err = {"type": type(error).__name__, "message": str(error), "traceback": traceback.format_exc(limit=8)}
        self.write_result(status, {}, steps_done=step, error=err)

    def write_result(self, status: str, final: Mapping[str, Any], steps_done: int, error: Mapping[str, Any] | None = None) -> None:
        result: dict[str, Any] = {"status": status, "steps_done": steps_done, "final": dict(final), **self.extra, "config": self.config}
        if error:
            result["error"] = dict(error)
        save_json(result, self.out_dir / "result.json")
        self.reported = True

    def _close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None


class ProgressBar(Callback):
    """A tqdm bar with the current objective; silent when not attached to a terminal."""

    def __init__(self, disable: bool | None = None) -> None:
        self.disable = disable
        self._bar: Any = None

    def on_start(self, ctx: RenderContext) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=ctx.steps, initial=ctx.start_step, desc="render", unit="step", disable=self.disable, dynamic_ncols=True)

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        if self._bar is not None:
            self._bar.set_postfix(objective=f"{record.metrics['objective']:.4g}", refresh=False)

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        self._close()

    def on_error(self, ctx: RenderContext, error: BaseException, step: int) -> None:
        self._close()
