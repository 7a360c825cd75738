"""ProgressBar: a tqdm bar with the current objective, as a render callback."""

from __future__ import annotations

from typing import Any

from featviz.callbacks import ClosingCallback, RenderContext, StepRecord


class ProgressBar(ClosingCallback):
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

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
