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
NAME_MAX = 64  # a run name longer than this is cut: the dashboard shows about that much
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
    Long paths keep their tail, the part that tells sweeps apart. The path is written
    relative to the working folder when it lies inside it, so a job that found its sweep
    folder as an absolute path (in a child process) names the group as the sweep does.
    """
    path = Path(sweep_dir).absolute()
    text = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
    return text[-GROUP_MAX:]


def swept_keys(sweep_dir: str | Path) -> list[str]:
    """The keys a multirun sweeps over: its command line's sweep overrides and ``hydra.sweeper.params``.

    Read from the ``multirun.yaml`` Hydra's sweeper writes into the sweep folder before it
    launches a job, so every job (any launcher, any process) sees the same list. Empty when
    the file is missing or unreadable: names then fall back to the job's overrides.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    path = Path(sweep_dir) / "multirun.yaml"  # tracking.SWEEP_RECORD
    try:
        hydra_cfg = OmegaConf.load(path).hydra
        task = [str(o) for o in hydra_cfg.overrides.task]
        params = hydra_cfg.sweeper.get("params") or {}
        parsed = OverridesParser.create().parse_overrides([*task, *(f"{k}={v}" for k, v in params.items())])
    except Exception as exc:  # noqa: BLE001 - a name is a convenience; any unreadable file means "unknown"
        log.debug("no sweep keys from %s: %s", path, exc)
        return []
    return list(dict.fromkeys(o.key_or_group for o in parsed if o.is_sweep_override()))


def override_key(override: str) -> str:
    """``+a.b=1`` / ``~a.b`` / ``a.b=1`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key's last part (``regularizer.tv`` -> ``tv``, ``experiment/family`` -> ``family``), the full key where two would clash."""
    last = {k: k.replace("/", ".").rsplit(".", 1)[-1] for k in keys}
    return {k: s if list(last.values()).count(s) == 1 else k for k, s in last.items()}


def run_name(overrides: Sequence[str], swept: Sequence[str] = (), limit: int = NAME_MAX) -> str:
    """A short name that tells a run apart from the others of its sweep: ``tv=0.5,seed=1``.

    In a sweep only the swept keys count (the values every job shares are noise in a list of
    runs); a single run shows its overrides. ``logger.*`` and ``hydra.*`` overrides change
    where results go, not the image, and are left out. The full overrides stay in the config.
    """
    pairs = [(override_key(o), o.partition("=")[2]) for o in overrides if "=" in o]
    pairs = [(k, v) for k, v in pairs if k.split(".")[0] not in ("logger", "hydra") and (not swept or k in swept)]
    short = short_keys([k for k, _ in pairs])
    name = ",".join(f"{short[k]}={v}" for k, v in pairs) or "default"
    return name if len(name) <= limit else name[: limit - 1] + "…"


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
        # The run's terminal output (warnings, errors, the final line) is kept as its
        # output.log; "wrap" tees sys.stdout/stderr writes, so the terminal and tqdm are unchanged.
        console="wrap",
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


def sweep_sync_hint(sweep_dir: str | Path, with_table: bool) -> str:
    """The one command that uploads every offline run of a sweep (its jobs and its table run)."""
    root = Path(sweep_dir)
    globs = [f"{root}/*/wandb/offline-run-*", *([f"{root}/wandb/offline-run-*"] if with_table else [])]
    return f"W&B offline runs of this sweep saved under {root}; upload them all with `wandb sync {' '.join(globs)}`"


def sync_hint(run: Run) -> str:
    """Where the run's files are and how to upload them (offline runs only need the second part)."""
    run_path = Path(run.settings.sync_dir)
    if run.settings.mode == "offline":
        return f"W&B offline run saved in {run_path}; upload it later with `wandb sync {run_path}`"
    if run.settings.mode == "disabled":
        return "W&B is disabled (logger.mode=disabled): nothing is logged; use logger.mode=offline to keep a run"
    return f"W&B run {run.name!r} logging to {run.url or run_path}"
