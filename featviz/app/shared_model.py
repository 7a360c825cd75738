"""The network of a sweep's isolated jobs, built and optimized once in their fork server.

Each isolated job (:mod:`featviz.app.isolation`) is a child forked from one server process;
a job that loads its network, folds its BatchNorms and checks its fused kernels itself pays
that again for the same model (0.3 s for the embedded EfficientNet-Lite0, 2 s for a
torchvision ResNet-50 with its torchvision import, on two cores; docs/performance.md). So the first isolated job names its
model in the server's environment (:func:`server_env`), the server builds it when it imports
this module (it is preloaded), and every job with the same model and ``perf`` settings takes
it (:func:`take`): copy-on-write, so what a job changes stays in that job's process.

The server builds with one torch thread: a kernel run on more threads would start an OpenMP
pool that a forked child cannot use (it hangs), while one that never started is made afresh
in each child. Only CPU jobs share (a CUDA context does not survive fork either).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from featviz.models import FeatureModel

log = logging.getLogger("featviz")

#: The environment variable that carries the model's key (its configs, as JSON) to the server.
ENV = "FEATVIZ_SHARED_MODEL"


def key(cfg: Mapping[str, Any]) -> str:
    """What decides the built network: the ``model`` group (less the step-dependent
    ``redirected_relu``, applied per job) and the ``perf`` options."""
    model = {k: v for k, v in (cfg.get("model") or {}).items() if k != "redirected_relu"}
    return json.dumps({"model": model, "perf": cfg.get("perf") or {}}, sort_keys=True, default=str)


def server_env(cfg: Mapping[str, Any]) -> dict[str, str]:
    """The fork server's extra environment for this job's model; empty where it does not share:
    a GPU run, or ``model.net`` (a user's module is built in the job alone, so that a crash in
    its code fails that job, not the server every job forks from)."""
    from featviz.render import resolve_device

    if (cfg.get("model") or {}).get("net") is not None:
        return {}
    try:
        if resolve_device(cfg.get("device", "auto")).type != "cpu":
            return {}
        return {ENV: key(cfg)}
    except Exception:  # noqa: BLE001 - the job itself reports a bad device or config
        return {}


def _build_from_env() -> tuple[str, FeatureModel] | None:
    """In the server: build the model that :data:`ENV` names, on one thread; None if unset
    or if building fails (the job then builds, and reports the failure, itself)."""
    spec = os.environ.pop(ENV, None)  # popped: the jobs, and what they start, do not inherit it
    if not spec:
        return None
    import torch

    from featviz.app.build import model_from_config, perf_from_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = json.loads(spec)
        model = model_from_config(cfg["model"], "cpu").optimize(perf_from_config(cfg["perf"]))
    except Exception as exc:  # noqa: BLE001 - a server that raises here would fail every job
        log.debug("the fork server did not build the shared model: %s", exc)
        return None
    finally:
        torch.set_num_threads(threads)
    return spec, model


_SHARED = _build_from_env()


def take(cfg: Mapping[str, Any]) -> FeatureModel | None:
    """The server's model if this job's ``model`` and ``perf`` configs built it, else None."""
    if _SHARED is None or _SHARED[0] != key(cfg):
        return None
    return _SHARED[1]
