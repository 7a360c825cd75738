"""What the timm and open_clip builders share: the optional package and the offline hub.

Both read pretrained weights from the local Hugging Face cache only: a render must never
wait on (or fail for) the network, and a lab's cluster nodes often have none.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from featviz.errors import ConfigError


def require(package: str, extra: str, model: str) -> ModuleType:
    """Import ``package`` or raise one line naming the extra that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"model={model} needs the {package} package: pip install 'featviz[{extra}]'") from None


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """The Hugging Face hub in offline mode for this block only (cache hits, never a download).

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` when imported, so its constant is set too.
    """
    from huggingface_hub import constants

    saved_env, saved_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_const
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def hub_folder(repo_id: str) -> Path:
    """The cache folder that holds (or would hold) the hub repository ``repo_id``."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
