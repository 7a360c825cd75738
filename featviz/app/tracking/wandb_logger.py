"""Logging one render to Weights & Biases, as one more render-loop callback.

Per logged step the run gets the metrics the loop recorded (``opt/objective``,
``opt/loss``, ``opt/reg/<name>``, ``opt/lr``, ``opt/activation`` where
:class:`featviz.metrics.activation.ActivationProbe` took it, and whatever later features
add), all plotted against ``opt/step`` (the loop's own step count, declared with
``define_metric``) so curves stay correct whatever else is logged; the objective and the
activation also keep their maximum in the summary (``summary="max"``), the number a sweep
is compared by. Images go to ``images/snapshot`` at the configured snapshot steps and
``images/final`` at the last step; the summary holds ``final/<metric>`` for every entry of
``result.final``. The run is named by the keys its sweep varies
(:func:`~featviz.app.tracking.session.run_name`), and its console output is kept.

Tracking must never cost the user their render: every wandb call is guarded, the first
failure is reported once and turns the logger off, and the run directory written by
:class:`featviz.writer.RunWriter` stays complete. The W&B run is always finished, with a
non-zero exit code when the render failed, so the next job of a sweep gets a fresh run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from featviz.app.tracking.session import check_mode, run_name, run_tags, start_run, sync_hint
from featviz.callbacks import Callback, RenderContext, RenderResult, StepRecord
from featviz.errors import ConfigError, Preempted
from featviz.images import atomic_write_bytes, to_uint8

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

log = logging.getLogger("featviz")
T = TypeVar("T")

STEP = "opt/step"
PEAKS = ("opt/objective", "opt/activation")  # their summary is the maximum, not the last value
FAILED_EXIT_CODE = 1
# A rerun of the same folder (a resumed render) continues the W&B run whose id is kept here,
# instead of starting a duplicate.
RUN_ID_FILE = "wandb_run_id.txt"


def _positive_int(value: int, key: str) -> int:
    """``value`` (typed by the logger schema) if it is at least 1."""
    if value < 1:
        raise ConfigError(f"{key}={value} must be >= 1 (1 logs every recorded step)")
    return value


class WandbLogger(Callback):
    """Streams one render into one W&B run; see the module docstring for what is logged.

    Args:
        logger_cfg: the ``logger`` config group (``conf/logger/wandb.yaml``).
        config: the resolved run config, stored as the W&B run config.
        out_dir: the run's output folder; W&B's files go to ``out_dir/wandb/``.
        overrides: the job's command-line overrides (stored in the config; the swept ones name the run).
        group: the W&B group, normally the sweep's (``logger.group`` wins when set).
        swept: the keys the job's sweep varies; empty for a single run.
        in_sweep: the job belongs to a multirun, whose end prints one ``wandb sync`` line for all jobs.
    """

    def __init__(
        self,
        logger_cfg: Mapping[str, Any],
        config: Mapping[str, Any],
        out_dir: str | Path,
        overrides: Sequence[str] = (),
        group: str | None = None,
        swept: Sequence[str] = (),
        in_sweep: bool = False,
    ) -> None:
        self.logger_cfg = dict(logger_cfg)
        check_mode(self.logger_cfg)
        self.every = _positive_int(self.logger_cfg.get("log_every", 1), "logger.log_every")
        self.log_images = bool(self.logger_cfg.get("log_images", True))
        self.out_dir = Path(out_dir)
        self.run_config = {**config, "overrides": list(overrides), "out_dir": str(self.out_dir)}
        self.name = str(self.logger_cfg.get("name") or run_name(overrides, swept))
        self.in_sweep = in_sweep
        self.group = self.logger_cfg.get("group") or group
        self.job_type = str((config.get("objective") or {}).get("kind", "render"))
        self.tags = run_tags(config, self.logger_cfg)
        self.run: Run | None = None
        self.disabled = False

    # --- failure isolation ------------------------------------------------------------
    def _guard(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Call a wandb function; on any error report once, stop tracking, carry on."""
        if self.disabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._disable(what, exc)
            return None

    def _disable(self, what: str, exc: Exception) -> None:
        self.disabled = True
        log.warning(
            "W&B %s failed (%s: %s); tracking is off for the rest of this run, the render goes on and %s keeps every file",
            what,
            type(exc).__name__,
            exc,
            self.out_dir,
        )
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=FAILED_EXIT_CODE)
            except Exception as finish_exc:  # already reported above; a second message adds nothing useful
                log.debug("W&B finish after failure also failed: %s", finish_exc)

    def close(self, exit_code: int = 0) -> None:
        """Finish the W&B run once; later calls do nothing (so callers may always call it)."""
        run, self.run = self.run, None
        if run is not None:
            self._guard("finish", run.finish, exit_code=exit_code)

    # --- callback hooks ---------------------------------------------------------------
    def on_start(self, ctx: RenderContext) -> None:
        id_file = self.out_dir / RUN_ID_FILE
        run_id = (id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else "") or None
        self.run = self._guard(
            "init",
            start_run,
            self.logger_cfg,
            run_dir=self.out_dir,
            name=self.name,
            group=self.group,
            job_type=self.job_type,
            config=self.run_config,
            tags=self.tags,
            run_id=run_id,
        )
        if self.run is None:
            return
        if run_id is None:
            new_id = self.run.id.encode()
            self._guard("saving the run id", atomic_write_bytes, id_file, lambda f: f.write(new_id))
        self._guard("define_metric", self._define_metrics, self.run)
        if self.run is not None:
            log.log(logging.DEBUG if self.in_sweep else logging.INFO, sync_hint(self.run))

    @staticmethod
    def _define_metrics(run: Run) -> None:
        run.define_metric(STEP)
        for key in PEAKS:
            run.define_metric(key, step_metric=STEP, summary="max")
        run.define_metric("opt/*", step_metric=STEP)
        run.define_metric("images/*", step_metric=STEP)

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        if self.run is None:
            return
        last = record.step == ctx.steps
        if not (record.step % self.every == 0 or record.snapshot or last):
            return
        self._guard("log", self._log_step, self.run, record, last)

    def _log_step(self, run: Run, record: StepRecord, last: bool) -> None:
        row: dict[str, Any] = {STEP: record.step, **{f"opt/{k}": v for k, v in record.metrics.items()}}
        if self.log_images and record.snapshot:
            row["images/snapshot"] = self._images(record.images, record.per_image, f"step {record.step}")
        if self.log_images and last:
            row["images/final"] = self._images(record.images, record.per_image, f"final, step {record.step}")
        run.log(row)

    @staticmethod
    def _images(images: torch.Tensor, scores: Sequence[float], label: str) -> Any:
        """One captioned ``wandb.Image`` per batch element (a list when the batch has several)."""
        import wandb

        out = [
            wandb.Image(to_uint8(img), caption=f"{label}, objective {score:.4g}" + (f", image {i}" if len(images) > 1 else ""))
            for i, (img, score) in enumerate(zip(images, scores))
        ]
        return out if len(out) > 1 else out[0]

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        if self.run is None:
            return
        summary: dict[str, Any] = {f"final/{k}": v for k, v in result.final.items()}
        summary["status"] = "completed"
        self._guard("summary", self.run.summary.update, summary)
        self.close(0)

    def on_error(self, ctx: RenderContext, error: BaseException, step: int) -> None:
        if self.run is None:
            return
        status = "preempted" if isinstance(error, Preempted) else "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        self._guard("summary", self.run.summary.update, {"status": status, "steps_done": step, "error": f"{type(error).__name__}: {error}"})
        self.close(FAILED_EXIT_CODE)
