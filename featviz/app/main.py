"""The Hydra entry point of a render: one job, its failure handling, and the one-line errors.

A FeatvizError is printed as one line (:mod:`featviz.app.reporting`); a single run then exits
with 2, while a multirun job records the failure in its result.json and lets the sweep go on;
the sweep summary (:mod:`featviz.app.sweep_summary`) lists the failures at the end. A size
that cannot fit in memory is refused before anything is built (:mod:`featviz.memory`), and an
allocation that fails anyway is one line too, not a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from featviz.app.config import CONF_SOURCE, to_plain
from featviz.app.job import run_job
from featviz.app.reporting import is_out_of_memory, one_line, report
from featviz.errors import ConfigError, FeatvizError, Preempted, check_seed
from featviz.rundir import RESULT_NAME, RunLock

#: Image-sized float32 tensors a render step certainly holds: the parameter, its gradient, two
#: Adam moments, the decoded image and its gradient, a transformed view and its gradient.
IMAGE_COPIES = 8
#: Input-sized float32 tensors of activations per image, at least (real networks keep tens).
ACTIVATION_COPIES = 4


def check_memory(cfg: DictConfig) -> None:
    """Refuse, with the numbers, a CPU render that cannot fit in memory, before anything is built.

    Without it ``param.size=20000`` or a huge ``batch`` allocates until the kernel's OOM killer
    ends the process, with no message and no ``result.json``. The estimate is a lower bound
    (:data:`IMAGE_COPIES`, :data:`ACTIVATION_COPIES`), so only a run that cannot fit is refused;
    a CUDA allocator's own error is clean and is reported as one line (:func:`main`).
    """
    import torch

    from featviz.models.footprint import free_bytes

    device = str(cfg.get("device", "auto"))
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return
    param, model = cfg.get("param") or {}, cfg.get("model") or {}
    size, batch, channels = int(param.get("size") or 0), int(cfg.get("batch") or 1), int(model.get("in_channels") or 3)
    side = int(model.get("input_size") or 224) if bool((cfg.get("transforms") or {}).get("resize", True)) else size
    image = batch * channels * size * size * 4
    need = IMAGE_COPIES * image + ACTIVATION_COPIES * batch * channels * side * side * 4
    have = free_bytes(torch.device("cpu"))
    if need <= have:
        return
    gib = 2**30
    raise ConfigError(
        f"param.size={size} with batch={batch} needs at least {need / gib:.1f} GiB ({IMAGE_COPIES} image-sized tensors of {image / gib:.2f} GiB "
        f"and the network's activations) but {have / gib:.1f} GiB of memory is free; lower param.size or batch "
        f"(with transforms.resize=true the network sees {side} px whatever param.size is)"
    )


#: W&B's bounds on a tag's length: it refuses the whole run otherwise (tracking would be off).
TAG_CHARS = (1, 64)


def check_tags(cfg: DictConfig) -> None:
    """Refuse a tag W&B would refuse: that turned tracking off for a run which then said completed."""
    logger = cfg.get("logger") or {}
    if str(logger.get("kind", "none")) == "none":
        return
    low, high = TAG_CHARS
    for key, tags in (("tags", cfg.get("tags")), ("logger.tags", logger.get("tags"))):
        for tag in tags or []:
            if not low <= len(str(tag)) <= high:
                shown = str(tag) if len(str(tag)) <= 24 else f"{str(tag)[:20]}..."
                raise ConfigError(f"{key}: the tag {shown!r} is {len(str(tag))} characters; W&B takes tags of {low} to {high} characters and refuses the run otherwise")


def preflight(cfg: DictConfig, out_dir: Path) -> None:
    """What is refused before the job builds anything: a seed the generator cannot tell from
    another (:func:`~featviz.errors.check_seed`), a size that cannot fit (:func:`check_memory`),
    a tag W&B would refuse (:func:`check_tags`). A refusal is recorded in ``result.json``, so a
    sweep's summary lists the job with its reason."""
    try:
        check_seed(cfg.get("seed", 0))
        check_tags(cfg)
        check_memory(cfg)
    except FeatvizError as exc:
        from featviz.writer import RunWriter

        with RunLock(out_dir):
            if not (out_dir / RESULT_NAME).exists():
                RunWriter(out_dir, config=to_plain(cfg), extra={"overrides": list(HydraConfig.get().overrides.task)}).fail(exc, steps_done=0)
        raise


def final_line(final: dict[str, Any] | None) -> str:
    """The run's end in words, each number named: the objective on the last step's transformed
    views (what the progress bar shows) and on the untransformed image (``final.png``)."""
    final = final or {}
    if "objective" not in final:
        return "done"
    views = f"last step's views {final['objective']:.4g}"
    if "objective_clean" not in final:
        return f"final objective {final['objective']:.4g} ({views})"
    return f"final objective {final['objective_clean']:.4g} (untransformed image; {views})"


@hydra.main(version_base="1.3", config_path=CONF_SOURCE, config_name="config")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    """Render one job of the composed config (``python -m featviz [overrides]``)."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = f"job {hydra_cfg.job.num}: " if multirun else ""
    try:
        preflight(cfg, out_dir)
        if cfg.get("search") is not None:  # a trial of +experiment=search: its units as one pack, one number back
            from featviz.app.search import run_trial

            return run_trial(cfg, out_dir)  # type: ignore[return-value]
        final = run_job(cfg, out_dir, isolate=multirun if cfg.get("isolate") is None else bool(cfg.isolate))
    except Preempted as exc:  # the whole process was told to stop, so a sweep stops too
        again = f"hydra.sweep.dir={hydra_cfg.sweep.dir}" if multirun else f"hydra.run.dir={out_dir}"
        hint = "" if exc.handed_over else f"; run the same command with {again} to resume"
        what = "interrupted" if exc.signal_name == "SIGINT" else "preempted"
        print(f"featviz: {what}: {job}{exc}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the loop's handler is in place: nothing to resume yet
        print(f"featviz: interrupted: {job}before the first step; nothing was rendered", file=sys.stderr)
        sys.exit(130)
    except FeatvizError as exc:
        code = report("featviz", f"{job}{exc}")
        if multirun:
            return None
        sys.exit(code)
    except Exception as exc:  # a bug, NaN or OOM in one job must not cost the sweep its other jobs
        if is_out_of_memory(exc):
            code = report("featviz", f"{job}out of memory ({one_line(str(exc))}); lower param.size or batch, or use a device with more memory; what was saved is in {out_dir}")
            if multirun:
                return None
            sys.exit(code)
        if not multirun:
            raise
        print(f"featviz: error: {job}{type(exc).__name__}: {one_line(str(exc))} (traceback in {out_dir / 'result.json'}); the sweep goes on", file=sys.stderr)
        return None
    print(f"featviz: {final_line(final)}; images in {out_dir} (final.png, snapshots/, metrics.jsonl, result.json)")
    return final
