"""Make the repository's ``experiments/`` folder the Hydra config group ``experiment``.

``python -m featviz -m +experiment=NAME`` then loads ``experiments/NAME.yaml``, and a
sub-folder ``experiments/family/`` is the group ``experiment/family``. A plain search-path
entry cannot do this: Hydra names a group after its folder, so ``experiments/`` would
become the group ``experiments``. Hence a tiny config source that serves the folder under
the group name, plus the search-path plugin that adds it. Names starting with ``_`` (shared
pieces such as ``_spectrum_base.yaml``) load when referenced but are not listed as options,
so ``glob(*)`` sweeps and "Available options" skip them.

The folder is found from this file's location (``<repo>/hydra_plugins/featviz_searchpath``),
which is where an editable install (``pip install -e .``) leaves it. The entry is only
added to featviz's own config search path (the one holding ``<repo>/conf``), so other
Hydra apps in the same environment are unaffected.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra._internal.core_plugins.file_config_source import FileConfigSource

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
GROUP = "experiment"
SCHEME = "featviz-experiments"


class ExperimentsConfigSource(FileConfigSource):
    """A folder of configs served as one config group (``GROUP``) instead of the root."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    @staticmethod
    def _local(config_path: str) -> str | None:
        """``experiment/x`` -> ``x``; ``experiment`` -> ``""``; anything else -> None."""
        if config_path == GROUP:
            return ""
        if config_path.startswith(GROUP + "/"):
            return config_path[len(GROUP) + 1 :]
        return None

    def load_config(self, config_path: str) -> ConfigResult:
        local = self._local(config_path)
        if local is None:
            raise ConfigLoadError(f"Config not found : {config_path}")
        return super().load_config(local)

    def is_group(self, config_path: str) -> bool:
        if config_path == "":
            return True
        local = self._local(config_path)
        return local is not None and super().is_group(local)

    def is_config(self, config_path: str) -> bool:
        local = self._local(config_path)
        return local is not None and local != "" and super().is_config(local)

    def available(self) -> bool:
        return os.path.isdir(self.path)

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        want_groups = results_filter in (None, ObjectType.GROUP)
        want_configs = results_filter in (None, ObjectType.CONFIG)
        if config_path == "":
            return [GROUP] if want_groups else []
        local = self._local(config_path)
        if local is None or not super().is_group(local):
            return []
        folder = os.path.join(self.path, local)
        names = set()
        for entry in os.listdir(folder):
            if entry.startswith((".", "_")):
                continue
            stem, ext = os.path.splitext(entry)
            if want_groups and os.path.isdir(os.path.join(folder, entry)):
                names.add(entry)
            elif want_configs and ext in (".yaml", ".yml"):
                names.add(stem)
        return sorted(names)


class FeatvizSearchPathPlugin(SearchPathPlugin):
    """Adds ``experiments/`` (as group ``experiment``) to featviz's config search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        conf = str(REPO_ROOT / "conf")
        ours = any(entry.path is not None and entry.path.rstrip("/").endswith(conf) for entry in search_path.get_path())
        if ours and EXPERIMENTS_DIR.is_dir():
            search_path.append(provider="featviz-experiments", path=f"{SCHEME}://{EXPERIMENTS_DIR}")
