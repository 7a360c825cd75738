"""Starting W&B runs the same way for render jobs and for the end-of-sweep table.

Both need the same promises: offline by default so nothing needs a server or network,
quiet so a sweep's terminal is not flooded, run files inside the folder the run belongs
to, and a ``group`` that every job of one Hydra sweep derives identically, so the W&B
dashboard shows the sweep as one family of runs.

wandb is imported inside functions: Hydra instantiates the sweep callback on every start,
and ``logger=none`` runs should not pay wandb's import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featviz.errors import ConfigError

log = logging.getLogger("featviz")

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

MODES = ("offline", "online", "disabled")
GROUP_MAX = 128  # W&B's limit on group names
DEFAULT_PROJECT = "featviz"
ONLINE_TIMEOUT_S = 15  # seconds logger.mode=online waits for the W&B server before going offline


def check_mode(logger_cfg: Mapping[str, Any]) -> str:
    """The validated ``logger.mode``; offline unless the user asked otherwise."""
    mode = str(logger_cfg.get("mode") or "offline")
    if mode not in MODES:
        raise ConfigError(f"logger.mode={mode!r} is not a W&B mode; use one of {list(MODES)} (offline needs no server)")
    return mode


def sweep_group(sweep_dir: str | Path) -> str:
    """The W&B group of a sweep: its output folder, which every job of the sweep shares.

    The folder is unique per sweep (Hydra stamps it with the start time) and it is what a
    user finds on disk, so the dashboard and the file tree name the sweep the same way.
    Long paths keep their tail, the part that tells sweeps apart.
    """
    text = str(sweep_dir).rstrip("/") or "/"
    return text[-GROUP_MAX:]


def run_tags(config: Mapping[str, Any], logger_cfg: Mapping[str, Any]) -> list[str]:
    """Top-level ``tags`` plus ``logger.tags``, deduplicated, in order."""
    tags: list[str] = []
    for tag in [*(config.get("tags") or []), *(logger_cfg.get("tags") or [])]:
        if str(tag) not in tags:
            tags.append(str(tag))
    return tags


def start_run(
    logger_cfg: Mapping[str, Any],
    *,
    run_dir: Path,
    name: str | None,
    group: str | None,
    job_type: str,
    config: Mapping[str, Any],
    tags: Sequence[str],
    run_id: str | None = None,
) -> Run:
    """``wandb.init`` with featviz's settings; W&B's files land in ``run_dir/wandb/``.

    ``run_id`` continues that W&B run (a resumed render) instead of starting a new one.

    Offline mode sends nothing anywhere: the run is written to disk only.

    ``reinit="create_new"`` because featviz always logs through the returned run object:
    a job must never be handed the previous job's run (W&B's default for scripts), even
    if that run was somehow left open.
    """
    import wandb

    mode = check_mode(logger_cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    # The process-wide settings decide wandb's own usage telemetry, which otherwise
    # contacts the W&B server even when the run itself is offline (seen with wandb 0.31).
    wandb.setup(settings=wandb.Settings(mode=mode, silent=True))
    settings = wandb.Settings(
        silent=True,  # featviz prints its own one-line notice instead
        console="off",  # keep the terminal and tqdm untouched; metrics are logged explicitly
        reinit="create_new",
    )
    kwargs: dict[str, Any] = dict(
        project=str(logger_cfg.get("project") or DEFAULT_PROJECT),
        entity=logger_cfg.get("entity") or None,
        dir=str(run_dir),
        name=name,
        group=group,
        job_type=job_type,
        config=dict(config),
        tags=list(tags),
        id=run_id,
        resume="allow" if run_id else None,
    )
    if mode != "online":
        return wandb.init(mode=mode, settings=settings, **kwargs)
    # Online: a server that cannot be reached must not stall the job for minutes (W&B's own
    # retries take ~90 s): give it ONLINE_TIMEOUT_S, then keep the run offline to sync later.
    settings.init_timeout = ONLINE_TIMEOUT_S
    try:
        return wandb.init(mode="online", settings=settings, **kwargs)
    except Exception as exc:  # noqa: BLE001 - W&B raises several kinds for "no server"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("W&B server unreachable (%s); this run is logged offline, `wandb sync` uploads it later", first[:200])
        wandb.setup(settings=wandb.Settings(mode="offline", silent=True))
        return wandb.init(mode="offline", settings=settings, **kwargs)


def sync_hint(run: Run) -> str:
    """Where the run's files are and how to upload them (offline runs only need the second part)."""
    run_path = Path(run.settings.sync_dir)
    if run.settings.mode == "offline":
        return f"W&B offline run saved in {run_path}; upload it later with `wandb sync {run_path}`"
    if run.settings.mode == "disabled":
        return "W&B is disabled (logger.mode=disabled): nothing is logged; use logger.mode=offline to keep a run"
    return f"W&B run {run.name!r} logging to {run.url or run_path}"
