"""ProgressBar: the render's progress with the current objective, wherever the output goes.

Three places a render runs, three ways to show it: a terminal gets tqdm's bar; a Jupyter
notebook gets tqdm's widget (or the text bar when ipywidgets is missing: the widget would
fail); a log file, a pipe or a batch job gets a plain line every tenth of the run, so a long
run that is not on a terminal is never silent.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from featviz.callbacks import ClosingCallback, RenderContext, StepRecord


#: What the bar's number is: the objective averaged over the transformed views the network saw
#: (the run's ``objective``), not the untransformed image's (``objective_clean``).
VIEWS_LABEL = "objective (views)"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where stderr is not a terminal but shows a bar fine)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


def _notebook_bar() -> Any:
    """tqdm's widget class, or None when ipywidgets is missing."""
    try:
        import ipywidgets  # noqa: F401 - tqdm.notebook needs it at the first bar, not at import
        from tqdm.notebook import tqdm
    except ImportError:
        return None
    return tqdm


class ProgressBar(ClosingCallback):
    """Progress of a render: a bar on a terminal or in a notebook, plain lines elsewhere.

    Args:
        disable: True shows nothing; None (default) picks the bar or, when neither a terminal
            nor a notebook is attached, ``lines`` plain lines on ``stream``; False forces the bar.
        lines: at most how many plain lines a run prints when not on a terminal (and the last one).
        min_gap_s: at least this many seconds between plain lines, so a short run prints one.
        stream: where plain lines and the text bar go (default ``sys.stderr``).
        desc: what is running, the bar's label and each plain line's start.
    """

    def __init__(
        self, disable: bool | None = None, lines: int = 10, min_gap_s: float = 2.0, stream: TextIO | None = None, desc: str = "render"
    ) -> None:
        self.disable = disable
        self.desc = desc
        self.lines = max(1, int(lines))
        self.min_gap_s = float(min_gap_s)
        self.stream = stream
        self._bar: Any = None
        self._plain = False
        self._next = 0
        self._objective = float("nan")
        self._start = self._last = 0.0
        self._first = 0

    def on_start(self, ctx: RenderContext) -> None:
        stream = self.stream or sys.stderr
        if self.disable:
            return
        notebook = in_notebook()
        if self.disable is None and not notebook and not (hasattr(stream, "isatty") and stream.isatty()):
            self._plain, self._first = True, ctx.start_step
            self._start = self._last = time.perf_counter()
            self._next = ctx.start_step + max(1, ctx.steps // self.lines)
            return
        from tqdm import tqdm

        bar_class = (_notebook_bar() if notebook else None) or tqdm
        kwargs: dict[str, Any] = {} if bar_class is not tqdm else {"file": stream, "dynamic_ncols": True}
        if notebook and bar_class is tqdm:
            kwargs["mininterval"] = 2.0  # each refresh is one more output line a saved notebook keeps
        self._bar = bar_class(total=ctx.steps, initial=ctx.start_step, desc=self.desc, unit="step", **kwargs)

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        """Shows the views' objective of the image at ``record.step``; the last step's is the
        run's final objective, so the bar's last number is the one the run ends with."""
        self._objective = record.metrics["objective"]
        if self._bar is not None:
            self._bar.set_postfix({VIEWS_LABEL: f"{self._objective:.4g}"}, refresh=record.step == ctx.steps)
        elif self._plain and record.step == ctx.steps and record.step > self._first:
            self._print(ctx, record.step)

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        if self._bar is not None:
            self._bar.update(1)
        elif self._plain and step < ctx.steps and step >= self._next and time.perf_counter() - self._last >= self.min_gap_s:
            self._print(ctx, step)

    def _print(self, ctx: RenderContext, step: int) -> None:
        now = time.perf_counter()
        rate = (step - self._first) / (now - self._start) if now > self._start else float("nan")
        print(f"{self.desc}: step {step}/{ctx.steps} ({100 * step // ctx.steps} %), {VIEWS_LABEL} {self._objective:.4g}, {rate:.3g} steps/s",
              file=self.stream or sys.stderr, flush=True)
        self._next, self._last = step + max(1, ctx.steps // self.lines), now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._plain = False
