"""Where the configs live and how the app composes them: the schemas, the resolvers, compose().

Importing this module registers the typed schemas (:mod:`featviz.app.schemas`) and the
``featviz.cpu_share`` resolver once, before Hydra reads ``conf/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from featviz.app import schemas

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"


def cpu_share(parallel_jobs: int) -> int:
    """Torch threads per job when ``parallel_jobs`` jobs share this machine's cores.

    ``parallel_jobs`` follows joblib's ``n_jobs``: -1 is one job per core, -2 all but one.
    Without this every job would start one thread per core and they would fight over them.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = int(parallel_jobs) if int(parallel_jobs) > 0 else max(1, cores + 1 + int(parallel_jobs))
    return max(1, cores // jobs)


@contextmanager
def environ_set(extra: Mapping[str, str]) -> Iterator[None]:
    """``extra`` in ``os.environ`` for the ``with`` block, each variable restored (or removed) after:
    settings read from the environment by what starts inside (W&B, a fork server)."""
    before = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


OmegaConf.register_new_resolver("featviz.cpu_share", cpu_share, replace=True)
schemas.register()


def compose(overrides: Sequence[str], config_name: str = "config") -> DictConfig:
    """The config a render with these overrides would get, without running it (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """A resolved config as plain Python values (enums as their names), for the library and JSON."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
