"""Where the configs live and how the app composes them: the schemas, the resolvers, compose().

Importing this module registers the typed schemas (:mod:`featviz.app.schemas`) and the
``featviz.cpu_share`` resolver once, before Hydra reads ``conf/``
(the package ``featviz.conf``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from featviz.app import schemas

#: Hydra's name of featviz's configs: the package featviz.conf (``conf/`` of the repository, shipped
#: inside the installed package), so no command needs a checkout.
CONF_SOURCE = "pkg://featviz.conf"


def package_folder(name: str) -> Path:
    """The folder of the installed package ``name`` (featviz.conf, featviz.experiments)."""
    return Path(str(importlib.resources.files(name)))


CONF_DIR = package_folder("featviz.conf")
STUDIES_DIR = package_folder("featviz.experiments")
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def studies() -> list[str]:
    """The studies of ``experiments/`` (the package featviz.experiments): ``+experiment=NAME`` runs one."""
    return sorted(p.name for p in STUDIES_DIR.iterdir() if (p / "config.yaml").is_file())


def version() -> str:
    """featviz's version from the installed package's metadata."""
    try:
        return importlib.metadata.version("featviz")
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        import featviz

        return featviz.__version__


def git_commit() -> str | None:
    """The commit of the featviz checkout this code runs from, or None for an installed package.

    Asked only where featviz's own repository holds the package (its ``.git`` beside it), so a
    lab whose virtual environment lives inside the lab's repository never records the lab's commit."""
    root = PACKAGE_DIR.parent
    if not (root / ".git").exists():
        return None
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


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


def register_plugins() -> None:
    """featviz's Hydra plugins (the fused launcher, the search path and the studies' source),
    registered by name as well as by Hydra's scan: an editable install (``pip install -e``) puts
    them where the scan of the ``hydra_plugins`` namespace does not look."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.featviz_fused.fused_launcher import FusedLauncher
    from hydra_plugins.featviz_searchpath.featviz_searchpath import FeatvizSearchPath, StudiesConfigSource

    for plugin in (FusedLauncher, FeatvizSearchPath, StudiesConfigSource):
        Plugins.instance().register(plugin)


OmegaConf.register_new_resolver("featviz.cpu_share", cpu_share, replace=True)
schemas.register()
register_plugins()


def compose(overrides: Sequence[str], config_name: str = "config") -> DictConfig:
    """The config a render with these overrides would get, without running it (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="featviz.conf", version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """A resolved config as plain Python values (enums as their names), for the library and JSON."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
