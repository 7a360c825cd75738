"""featviz's configs and studies on the search path of featviz's commands and of a lab's own.

Two small Hydra plugins, on purpose free of featviz imports (Hydra imports every plugin module
of the environment on start-up, featviz's library imports torch):

* :class:`FeatvizSearchPath` appends ``pkg://featviz.conf`` (every config group) and
  ``featviz-studies://featviz.experiments`` (the studies) to the search path, lowest priority,
  so a lab's primary config or ``hydra.searchpath`` entries come first and may override any
  option. It acts only in a process that runs featviz's app (``featviz.app`` imported): other
  Hydra apps installed beside featviz see no new groups.
* :class:`StudiesConfigSource` reads a folder of studies, one folder each
  (``experiments/NAME/config.yaml`` beside its README and pictures), as the ``experiment``
  config group: ``+experiment=NAME`` loads ``NAME/config.yaml``. A lab may lay out its own
  studies the same way and add ``featviz-studies://mylab.experiments`` (a module) or
  ``featviz-studies:///path/to/experiments`` (a folder) to ``hydra.searchpath``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import List, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

CONF = "pkg://featviz.conf"
STUDIES = "featviz-studies://featviz.experiments"
GROUP = "experiment"
STUDY_FILE = "config.yaml"


class FeatvizSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if "featviz.app" not in sys.modules:
            return
        present = {entry.path for entry in search_path.get_path()}
        for provider, path in (("featviz", CONF), ("featviz-studies", STUDIES)):
            if path not in present:
                search_path.append(provider=provider, path=path)


class StudiesConfigSource(ConfigSource):
    """One config group, ``experiment``, whose options are the study folders holding a config."""

    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        self._root = _folder(self.path)

    @staticmethod
    def scheme() -> str:
        return "featviz-studies"

    def _file(self, config_path: str) -> Optional[str]:
        group, _, name = config_path.removesuffix(".yaml").partition("/")
        if group != GROUP or not name or "/" in name or self._root is None:
            return None
        path = os.path.join(self._root, name, STUDY_FILE)
        return path if os.path.isfile(path) else None

    def load_config(self, config_path: str) -> ConfigResult:
        path = self._file(config_path)
        if path is None:
            raise ConfigLoadError(f"no study {config_path!r} in {self.full_path()}")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return ConfigResult(config=OmegaConf.create(text), path=self.full_path(), provider=self.provider,
                            header=ConfigSource._get_header_dict(text[:512]))

    def available(self) -> bool:
        return self._root is not None and os.path.isdir(self._root)

    def is_group(self, config_path: str) -> bool:
        return self.available() and config_path.strip("/") in ("", GROUP)

    def is_config(self, config_path: str) -> bool:
        return self._file(config_path) is not None

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        if not self.available():
            return []
        where = config_path.strip("/")
        if where == "":
            return [GROUP] if results_filter in (None, ObjectType.GROUP) else []
        if where != GROUP or results_filter == ObjectType.GROUP:
            return []
        assert self._root is not None
        return sorted(name for name in os.listdir(self._root) if os.path.isfile(os.path.join(self._root, name, STUDY_FILE)))


def _folder(path: str) -> Optional[str]:
    """A folder given as such, or the folder of an importable package named like ``featviz.experiments``."""
    if os.sep in path or os.path.isdir(path):
        return path
    try:
        spec = importlib.util.find_spec(path)
    except ModuleNotFoundError:
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None
