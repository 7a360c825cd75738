"""Config -> library objects: one builder per config group, each reading only its own group.

``build_run`` takes a config of the shape of ``conf/config.yaml`` (a plain mapping, as a
notebook or a test writes it, or a composed Hydra config) and first validates it against the
typed schemas (:mod:`featviz.app.schemas`), so dicts get the same checks as the command
line. Library constructors take typed arguments; only this module reads config keys.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from featviz.app import schemas
from featviz.app.config import to_plain
from featviz.callbacks import Callback
from featviz.errors import ConfigError, DatasetError, WeightsError
from featviz.metrics.callback import MetricsCallback
from featviz.metrics.diversity import DiversityMetric, deepest_layer
from featviz.metrics.views import UnseenViews
from featviz.metrics.reference import ReferenceSet
from featviz.metrics.scorer import ReferenceScorer
from featviz.models import FeatureModel, build_model
from featviz.models.redirected import activations
from featviz.models.registry import check_model_name
from featviz.models.speedups.options import PerfOptions
from featviz.objectives import build_objective
from featviz.objectives.base import Objective
from featviz.objectives.batch import DIVERSITY_KINDS, Alignment
from featviz.optimizers import eager
from featviz.params import PARAMS, build_param
from featviz.params.base import ImageParam
from featviz.params.init_image import load_photo, start_from
from featviz.params.rgba import RGBAImage
from featviz.regularizers.accentuation import PhotoDistance
from featviz.regularizers.alpha import AlphaImages, AlphaPenalty
from featviz.regularizers.base import Regularizer
from featviz.regularizers.frequency import build_regularizers
from featviz.regularizers.preconditioners import build_preconditioners
from featviz.regularizers.priors import build_priors
from featviz.render import RunParts, resolve_device
from featviz.schedules import CropSchedule, LRSchedule, RedirectedReLU
from featviz.transforms import Compose, build_transforms

log = logging.getLogger("featviz")


def _typed(schema: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` merged into ``schema`` (type and key checks), back as plain values."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(dict(values)))
        return to_plain(merged)  # type: ignore[arg-type]
    except OmegaConfBaseException as exc:
        first = str(exc).splitlines()[0]
        key = getattr(exc, "full_key", None)
        fields = ", ".join(f.name for f in dataclasses.fields(schema))
        raise ConfigError(f"{where}{'.' + key if key else ''}: {first} (the keys are {fields})") from None


def _kind_schema(group: str, values: Mapping[str, Any], table: Mapping[str, type]) -> type:
    kind = values.get("kind")
    if kind not in table:
        raise ConfigError(f"{group}.kind={kind!r} is unknown; use one of {sorted(table)}")
    return table[str(kind)]


def validate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A run config checked against the typed schemas, with every default filled in.

    The per-kind groups (``param``, ``objective``) are checked against the schema of their
    ``kind``; everything else against :class:`featviz.app.schemas.Config` (or, with a
    ``units`` block, :class:`featviz.app.schemas.UnitsAppConfig`).
    """
    cfg = dict(cfg)
    schema = schemas.UnitsAppConfig if "units" in cfg else schemas.Config
    per_kind = {"param": schemas.PARAM_SCHEMAS, "objective": schemas.OBJECTIVE_SCHEMAS}
    typed = {g: _typed(_kind_schema(g, dict(cfg[g]), table), cfg[g], g) for g, table in per_kind.items() if g in cfg}
    rest = _typed(schema, {k: v for k, v in cfg.items() if k not in typed}, "config")
    missing = [g for g in per_kind if g not in typed]
    if missing:
        raise ConfigError(f"the config has no {' or '.join(missing)} group; add e.g. param=fft objective=channel")
    checked = {**rest, **typed}
    check_ranges(checked)
    return checked


def _numbers(tree: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every ``(dotted key, number)`` of a plain config (list items keep their list's key)."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _numbers(value, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers(value, prefix)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield prefix.rstrip("."), tree


def check_ranges(cfg: Mapping[str, Any]) -> None:
    """Every float finite, every number inside :data:`featviz.app.schemas.RANGES`: one line naming the key."""
    for key, value in _numbers(cfg):
        if key.startswith(("spectrum.", "figure.")):  # the experiments' own tables, read through interpolations
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value} must be a finite number")
        low, high = schemas.RANGES.get(key) or schemas.RANGES.get(key.split(".")[0] + ".*") or (None, None)
        if low is not None and value < low:
            raise ConfigError(f"{key}={value} must be >= {low:g}" + (f" and <= {high:g}" if high is not None else ""))
        if high is not None and value > high:
            raise ConfigError(f"{key}={value} must be <= {high:g}" + (f" and >= {low:g}" if low is not None else ""))


def instantiate_module(spec: Any, key: str) -> nn.Module:
    """An ``nn.Module`` from ``{_target_: importable.Class, ...arguments}`` (Hydra's instantiate)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ConfigError(f"{key}={spec!r} must be a mapping with a _target_ (an importable nn.Module class) and its arguments")
    try:
        module = instantiate(dict(spec), _convert_="all")
    except (InstantiationException, ImportError, TypeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{key} could not be built ({first}); check {key}._target_ and its arguments") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{key}._target_={spec['_target_']!r} built a {type(module).__name__}, not a torch.nn.Module")
    return module


def model_from_config(cfg: Mapping[str, Any], device: str | torch.device = "cpu") -> FeatureModel:
    """The ``model`` group: a registry network, or ``net._target_`` for any module."""
    cfg = _typed(schemas.ModelConfig, cfg, "model")
    if cfg["name"] in ("timm", "open_clip") and not cfg["arch"]:
        raise ConfigError(f"model={cfg['name']} needs its architecture: model.arch=NAME (docs/models.md)")
    if cfg["arch"] and cfg["name"] not in ("timm", "open_clip"):
        raise ConfigError(f"model.arch={cfg['arch']!r} is read by model=timm and model=open_clip only; model={cfg['name']} names its network itself")
    if cfg["name"] == "custom" and cfg["net"] is None:
        raise ConfigError("model=custom needs its module: model.net='{_target_: my_lab.nets.MyNet, ...its arguments}' (docs/models.md)")
    net = instantiate_module(cfg["net"], "model.net") if cfg["net"] is not None else None
    sizes = {"input_size": cfg["input_size"], "in_channels": cfg["in_channels"], "mean": cfg["mean"], "std": cfg["std"]}
    return build_model(name=cfg["name"], weights=cfg["weights"], net=net, device=device, arch=cfg["arch"], **sizes)


def param_from_config(cfg: Mapping[str, Any], batch: int, generator: torch.Generator, channels: int = 3) -> ImageParam:
    """The ``param`` group, less the pixel preconditioners (:func:`preconditioners_from_config`).

    ``channels``: the model's input channels; a kind that cannot draw them is refused.
    """
    options = {k: v for k, v in cfg.items() if k not in ("kind", "grad_blur_sigma", "grad_normalize", "init_image")}
    if channels != 3:
        if "channels" not in inspect.signature(PARAMS[cfg["kind"]]).parameters:
            takes = ", ".join(k for k, c in PARAMS.items() if "channels" in inspect.signature(c).parameters)
            raise ConfigError(f"param={cfg['kind']} draws RGB images but the model takes {channels} channel(s); use param={takes}")
        options["channels"] = channels
    if cfg["kind"] == "generator":
        if options["checkpoint"] in (None, "???"):
            raise ConfigError("param.checkpoint is required with param=generator; point it at the generator's trained weights")
        options["net"] = instantiate_module(options["net"], "param.net")
    param = build_param(cfg["kind"], generator=generator, batch=batch, **options)
    if cfg.get("init_image"):
        start_from(param, load_photo(cfg["init_image"], param.size, channels))
    return param


def optimizer_from_config(cfg: Mapping[str, Any], compiled: bool = False) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    """A partial ``torch.optim`` constructor from the ``optimizer`` group (None arguments left out).

    Without ``compiled`` (``perf.compile``) the class has its compile guards off
    (:func:`featviz.optimizers.eager`): the same steps, without importing ``torch._dynamo``.
    """
    cfg = _typed(schemas.OptimizerConfig, cfg, "optimizer")
    lr = cfg["lr"]
    if not math.isfinite(lr) or lr < 0:
        raise ConfigError(f"optimizer.lr={lr} must be a finite number >= 0 (0.05 is the default)")
    target = cfg["_target_"]
    module, _, cls_name = target.rpartition(".")
    try:
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"optimizer._target_={target!r} is not importable; use e.g. torch.optim.Adam") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer._target_={target!r} is not a torch.optim.Optimizer class; use e.g. torch.optim.Adam or torch.optim.SGD")
    if cls is torch.optim.LBFGS:
        raise ConfigError("optimizer._target_=torch.optim.LBFGS needs a closure, which the render loop does not give; use torch.optim.Adam")
    kwargs = {k: v for k, v in cfg.items() if not k.startswith("_") and v is not None and k not in SCHEDULE_KEYS}
    chosen = cls if compiled else eager(cls)
    return lambda params: chosen(params, **kwargs)


#: The optimizer group's keys that set the learning-rate schedule, not the optimizer.
SCHEDULE_KEYS = ("schedule", "warmup", "lr_min", "step_every", "step_gamma")


def schedule_from_config(cfg: Mapping[str, Any]) -> LRSchedule | None:
    """The ``optimizer`` group's learning-rate schedule; None for a constant rate."""
    cfg = _typed(schemas.OptimizerConfig, cfg, "optimizer")
    if cfg["schedule"] == "none" and cfg["warmup"] == 0:
        return None
    return LRSchedule(cfg["schedule"], cfg["warmup"], cfg["lr_min"], cfg["step_every"], cfg["step_gamma"])


def photo_and_alpha_terms(pcfg: Mapping[str, Any], rcfg: Mapping[str, Any], param: ImageParam, model: FeatureModel) -> list[Regularizer]:
    """The accentuation distance to ``param.init_image`` and the RGBA alpha penalty, each left out at weight 0."""
    terms: list[Regularizer] = []
    if rcfg["accentuation"] > 0:
        if not pcfg.get("init_image"):
            raise ConfigError("regularizer.accentuation keeps the render near param.init_image; set param.init_image=PATH or regularizer.accentuation=0")
        if rcfg["accentuation_layer"]:
            model.check_layers([rcfg["accentuation_layer"]])
        photo = load_photo(pcfg["init_image"], param.size, model.in_channels)
        terms.append(PhotoDistance(rcfg["accentuation"], photo, model, rcfg["accentuation_layer"]))
    if rcfg["alpha"] > 0:
        terms.append(AlphaPenalty(rcfg["alpha"], param))
    return terms


def step_callbacks(cfg: Mapping[str, Any], param: ImageParam, transforms: Compose, model: FeatureModel) -> list[Callback]:
    """What changes with the step (learning rate, crop sizes, redirected ReLUs) and the RGBA alpha map."""
    callbacks: list[Callback] = [c for c in (schedule_from_config(cfg["optimizer"]), CropSchedule.of(transforms)) if c is not None]
    if cfg["model"]["redirected_relu"] > 0:
        activations(model.net)  # a network without ReLU modules is refused now, not at the first step
        callbacks.append(RedirectedReLU(cfg["model"]["redirected_relu"]))
    if isinstance(param, RGBAImage):
        callbacks.append(AlphaImages())
    return callbacks


def perf_from_config(cfg: Mapping[str, Any] | None) -> PerfOptions:
    """The ``perf:`` block as :class:`PerfOptions` (absent = the defaults)."""
    return PerfOptions(**_typed(schemas.PerfConfig, cfg or {}, "perf"))


def transforms_from_config(cfg: Mapping[str, Any], model: FeatureModel, fuse_geometry: bool) -> Compose:
    """The ``transforms`` group; ``resize`` resamples to the model's own input size."""
    options = dict(cfg)
    resize = model.input_size if options.pop("resize") else None
    return build_transforms(resize=resize, fuse_geometry=fuse_geometry, **options)


def with_batch_terms(
    objective: Objective,
    model: FeatureModel,
    batch: int,
    diversity: float = 0.0,
    diversity_layer: str | None = None,
    diversity_kind: str = "gram",
    alignment: float = 0.0,
    alignment_layer: str | None = None,
) -> tuple[Objective, list[Callback]]:
    """Add the configured batch terms to ``objective``; return it and the metric callbacks.

    ``objective - diversity * DIVERSITY_KINDS[diversity_kind](diversity_layer)
    + alignment * Alignment(alignment_layer)``, each left out at weight 0. Layers default to
    the objective's deepest layer. Every run with ``batch >= 2`` gets a
    :class:`DiversityMetric` at ``diversity_layer`` (or that default), which also scores the
    objective without the terms when any is on.
    """
    weights = {"diversity": diversity, "alignment": alignment}
    for key, weight in weights.items():
        try:
            weights[key] = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"regularizer.{key}={weight!r} must be a number (0 turns it off)") from None
        if not (math.isfinite(weights[key]) and weights[key] >= 0):
            raise ConfigError(f"regularizer.{key}={weight} must be a finite weight >= 0 (0 turns it off)")
    if diversity_kind not in DIVERSITY_KINDS:
        raise ConfigError(f"regularizer.diversity_kind={diversity_kind!r}; use one of {sorted(DIVERSITY_KINDS)}")
    default = deepest_layer(objective, model)
    metric_layer = diversity_layer or default
    main = objective if weights["diversity"] > 0 or weights["alignment"] > 0 else None
    if weights["diversity"] > 0:
        objective = objective - weights["diversity"] * DIVERSITY_KINDS[diversity_kind](metric_layer)
    if weights["alignment"] > 0:
        objective = objective + weights["alignment"] * Alignment(alignment_layer or default)
    callbacks: list[Callback] = [DiversityMetric(metric_layer, main)] if batch >= 2 else []
    return objective, callbacks


def build_metrics_callback(cfg: Mapping[str, Any], device: str | torch.device = "cpu") -> MetricsCallback | None:
    """Build the callback from the ``metrics:`` config group; None when ``enabled`` is false.

    A missing ``eval_model`` weights file is not an error: the run goes on with a logged
    warning and without ``transfer/*`` (the ``robust/*`` scores on unseen views remain). An
    unknown model name or reference folder is an error, raised before any optimization; the
    eval network itself is loaded only when a metric needs it (class runs, a reference).
    """
    cfg = _typed(schemas.MetricsConfig, cfg, "metrics")
    if not cfg["enabled"]:
        return None
    views = UnseenViews(crop=tuple(cfg["view_crop"]), flip=cfg["view_flip"], downscale=tuple(cfg["view_downscale"]), blur=tuple(cfg["view_blur"]))
    callback = MetricsCallback(
        views=cfg["views"], view_seed=cfg["view_seed"], view_transform=views, hf_cutoff=cfg["hf_cutoff"], progress_fraction=cfg["progress_fraction"]
    )
    name = cfg["eval_model"]
    if name not in (None, "", "none", "null"):
        check_model_name(name, "metrics.eval_model")  # now; the network itself only when a metric needs it
        callback.eval_model = lambda: _eval_model(name, cfg["eval_weights"], device)
    if cfg["reference"] not in (None, ""):
        try:
            reference = ReferenceSet.from_folder(cfg["reference"])
        except DatasetError as exc:
            raise DatasetError(f"metrics.reference={cfg['reference']}: {exc}") from None
        callback.reference = ReferenceScorer(
            reference,
            knn=cfg["knn"],
            quantile=cfg["exemplar_quantile"],
            path_layers=cfg["path_layers"],
            path_threshold=cfg["path_threshold"],
        )
        if name in (None, "", "none", "null"):
            log.warning("metrics.reference is set but metrics.eval_model is null: plausibility/*, path/*, mis/* are left out")
    return callback


@functools.lru_cache(maxsize=4)
def _eval_model(name: str, weights: str | None, device: str | torch.device) -> FeatureModel | None:
    """The eval network, or None with one warning when its weights are missing (no transfer/*).

    Built once per process: the jobs of a pack (or of a notebook's loop) score with the same
    frozen network, which only ever runs without gradients.
    """
    try:
        return build_model(name, weights=weights, device=device)
    except WeightsError as exc:
        log.warning(
            "metrics.eval_model=%s is unavailable, so transfer/* and the reference scores are left out (robust/* remains): %s "
            "[for the eval model, the weights path goes in metrics.eval_weights; metrics.eval_model=null skips it]",
            name,
            exc,
        )
        return None


def build_run(cfg: Mapping[str, Any], model: FeatureModel | None = None) -> RunParts:
    """Build model, objective, param, transforms, regularizers and optimizer from ``cfg``.

    ``cfg`` has the shape of ``conf/config.yaml`` (groups as nested mappings) and is validated
    first (:func:`validate`). ``model``, if given, is used instead of building ``cfg["model"]``,
    so many configs (a sweep in a notebook, the experiment tests) can share one loaded network.
    """
    cfg = validate(cfg)
    if cfg["steps"] < 1:
        raise ConfigError(f"steps={cfg['steps']} must be >= 1")
    batch = cfg["batch"]
    device = resolve_device(cfg["device"])
    generator = torch.Generator().manual_seed(cfg["seed"])
    model = model_from_config(cfg["model"], device) if model is None else model.to(device)
    objective = build_objective(**cfg["objective"], encode_text=model.text_encoder)
    pcfg = cfg["param"]
    param = param_from_config(pcfg, batch, generator, model.in_channels)
    perf = perf_from_config(cfg["perf"])
    transforms = transforms_from_config(cfg["transforms"], model, perf.fuse_geometry)
    rcfg = cfg["regularizer"]
    objective, callbacks = with_batch_terms(
        objective, model, batch, rcfg["diversity"], rcfg["diversity_layer"], rcfg["diversity_kind"], rcfg["alignment"], rcfg["alignment_layer"]
    )
    preconditioners = build_preconditioners(param, pcfg["grad_blur_sigma"], pcfg["grad_normalize"], rcfg["param_blur"], rcfg["param_blur_every"])
    regularizers = [
        *build_regularizers(
            rcfg["l1"], rcfg["l1_center"], rcfg["tv"], rcfg["blur"], rcfg["blur_sigma"], rcfg["bilateral"], rcfg["bilateral_sigma"], rcfg["bilateral_range"]
        ),
        *build_priors(
            param, rcfg["denoiser"], rcfg["denoiser_path"], rcfg["patch"], rcfg["patch_bank"], rcfg["patch_stride"], rcfg["patch_bank_size"], rcfg["latent"]
        ),
        *photo_and_alpha_terms(pcfg, rcfg, param, model),
    ]
    callbacks = [*step_callbacks(cfg, param, transforms, model), *callbacks]
    optimizer = optimizer_from_config(cfg["optimizer"], compiled=perf.compile)
    # Last, once the objective (with its batch terms) is known: its layers stay exact. Any
    # other folded convolution a callback reads later is unfolded when asked for.
    model.optimize(perf, keep=objective.layers)
    return RunParts(model, objective, param, transforms, regularizers, optimizer, generator, device, [*preconditioners, *callbacks])
