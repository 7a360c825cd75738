"""Build library objects from plain config mappings (the Hydra app's only dependency).

Kept apart from :mod:`featviz.app` so notebooks and tests can build a run from a dict,
and so the app stays a thin layer: config in, :func:`featviz.render.render` call out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from featviz.diversity import BATCH_TERM_KEYS, with_batch_terms
from featviz.errors import ConfigError
from featviz.models import FeatureModel, build_model
from featviz.objectives import Objective, build_objective
from featviz.params import ImageParam, build_param
from featviz.perf import PerfOptions
from featviz.preconditioning import GRADIENT_KEYS, PARAM_BLUR_KEYS, build_preconditioners
from featviz.priors import PRIOR_KEYS, build_priors
from featviz.regularizers import Regularizer, build_regularizers
from featviz.render import Callback, resolve_device
from featviz.transforms import Compose, build_transforms


@dataclass
class RunParts:
    """Everything ``render`` needs, built from one config."""

    model: FeatureModel
    objective: Objective
    param: ImageParam
    transforms: Compose
    regularizers: list[Regularizer]
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    generator: torch.Generator
    device: torch.device
    # Callbacks the config asks for (e.g. the diversity metric of batch runs); the app puts
    # them before its RunWriter so what they add to result.final is recorded.
    callbacks: list[Callback] = field(default_factory=list)


def _int(cfg: Mapping[str, Any], key: str) -> int:
    value = cfg.get(key)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} must be an integer") from None


def model_from_config(cfg: Mapping[str, Any], device: str | torch.device = "cpu") -> FeatureModel:
    net = None
    if cfg.get("net") is not None:
        from hydra.utils import instantiate  # only custom `_target_` models need Hydra

        net = instantiate(cfg["net"])
    return build_model(
        name=str(cfg.get("name", "efficientnet_lite0")),
        weights=cfg.get("weights", "imagenet"),
        input_size=cfg.get("input_size"),
        net=net,
        device=device,
    )


def optimizer_from_config(cfg: Mapping[str, Any]) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    """A partial ``torch.optim`` constructor from ``{_target_: ..., lr: ...}``."""
    lr = cfg.get("lr")
    if lr is not None:
        try:
            lr_f = float(lr)
        except (TypeError, ValueError):
            raise ConfigError(f"optimizer.lr={lr!r} must be a number") from None
        if not math.isfinite(lr_f) or lr_f < 0:
            raise ConfigError(f"optimizer.lr={lr} must be a finite number >= 0 (0.05 is the default)")
    target = str(cfg.get("_target_", "torch.optim.Adam"))
    module, _, cls_name = target.rpartition(".")
    try:
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
    except (ImportError, AttributeError):
        raise ConfigError(f"optimizer._target_={target!r} is not importable; use e.g. torch.optim.Adam") from None
    kwargs = {k: v for k, v in cfg.items() if not str(k).startswith("_")}
    return lambda params: cls(params, **kwargs)


def perf_from_config(cfg: Mapping[str, Any] | None) -> PerfOptions:
    """The ``perf:`` block as :class:`PerfOptions` (absent = the defaults)."""
    try:
        return PerfOptions(**dict(cfg or {}))
    except TypeError as exc:
        raise ConfigError(f"perf: {exc}; the keys are fold_bn, channels_last, compile, amp, fuse_geometry, keep_freed_memory, fuse_activations") from None


def build_run(cfg: Mapping[str, Any], model: FeatureModel | None = None) -> RunParts:
    """Build model, objective, param, transforms, regularizers and optimizer from ``cfg``.

    ``cfg`` has the shape of ``conf/config.yaml`` (groups as nested mappings). ``model``,
    if given, is used instead of building ``cfg["model"]``, so many configs (a sweep in a
    notebook, the experiment tests) can share one loaded network.
    """
    steps = _int(cfg, "steps")
    if steps < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    batch = _int(cfg, "batch")
    seed = _int(cfg, "seed")
    device = resolve_device(cfg.get("device", "auto"))
    generator = torch.Generator().manual_seed(seed)
    model = model_from_config(cfg["model"], device) if model is None else model.to(device)
    objective = build_objective(**dict(cfg["objective"]))
    pcfg = dict(cfg["param"])
    grad_cfg = {k: pcfg.pop(k) for k in GRADIENT_KEYS if k in pcfg}
    param = build_param(pcfg.pop("kind"), generator=generator, batch=batch, **pcfg)
    tcfg = dict(cfg["transforms"])
    resize = model.input_size if tcfg.pop("resize", True) else None
    scale = tcfg.pop("scale", None)
    perf = perf_from_config(cfg.get("perf"))
    transforms = build_transforms(scale=list(scale) if scale is not None else None, resize=resize, fuse_geometry=perf.fuse_geometry, **tcfg)
    rcfg = dict(cfg.get("regularizer") or {})
    batch_cfg = {k: rcfg.pop(k) for k in BATCH_TERM_KEYS if k in rcfg}
    objective, callbacks = with_batch_terms(objective, model, batch, **batch_cfg)
    blur_cfg = {k: rcfg.pop(k) for k in PARAM_BLUR_KEYS if k in rcfg}
    callbacks = [*build_preconditioners(param, **grad_cfg, **blur_cfg), *callbacks]
    prior_cfg = {k: rcfg.pop(k) for k in PRIOR_KEYS if k in rcfg}
    regularizers = [*build_regularizers(**rcfg), *build_priors(param, **prior_cfg)]
    optimizer = optimizer_from_config(dict(cfg["optimizer"]))
    # Last, once the objective (with its batch terms) is known: its layers stay exact. Any
    # other folded convolution a callback reads later is unfolded when asked for.
    model.optimize(perf, keep=objective.layers)
    return RunParts(model, objective, param, transforms, regularizers, optimizer, generator, device, callbacks)
