"""Typed configs: one structured-config schema per config group, registered in Hydra's ConfigStore.

Hydra merges every ``conf/`` file and command-line override into these dataclasses, so a
wrong type (``param.size=abc``, ``steps=1.5``), an unknown key or an unknown choice
(``param.value_range=soft``) is Hydra's error before any job starts, and ``no``/``off``
are real booleans. Groups of one shape (model, transforms, regularizer, ...) are typed by
their field in :class:`Config`; groups whose options differ in shape (``param``,
``objective``) are typed per option: each ``conf/<group>/<kind>.yaml`` names its schema
``/schema/<group>/<kind>`` in its defaults list. :func:`featviz.app.build.validate` applies
the same schemas to plain dicts, so notebooks and tests get the same checks without Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# OmegaConf resolves annotations at runtime, so they use typing's names (no PEP 604 unions).


def _choices(name: str, *values: str) -> type[Enum]:
    """An Enum whose members are named as their values: OmegaConf then refuses any other string."""
    return Enum(name, {v: v for v in values}, module=__name__)  # type: ignore[return-value]


ValueRange = _choices("ValueRange", "sigmoid", "clamp")  # how a parameterization maps its field to [0, 1]
PadMode = _choices("PadMode", "constant", "reflect", "replicate")
DiversityKind = _choices("DiversityKind", "gram", "style")
LoggerMode = _choices("LoggerMode", "offline", "online", "disabled")
LoggerKind = _choices("LoggerKind", "wandb", "none")
Amp = _choices("Amp", "none", "bf16")
UnitKind = _choices("UnitKind", "channel", "neuron")
Schedule = _choices("Schedule", "none", "cosine", "step")  # learning-rate schedule (featviz.schedules.LRSchedule)


@dataclass
class ModelConfig:
    """``model=NAME``: a registry network, or any ``nn.Module`` through ``net._target_``."""

    name: str = "efficientnet_lite0"
    arch: Optional[str] = None  # model=timm | open_clip: that library's architecture (resnet18, ViT-B-32)
    weights: Optional[str] = "imagenet"  # imagenet | none | path to a state_dict (open_clip: a pretrained tag)
    input_size: Optional[int] = None  # null = the weights' own (torchvision metadata), a ViT's image_size, else 224
    net: Optional[Any] = None  # {_target_: importable.Class, ...arguments} for model=custom
    in_channels: Optional[int] = None  # null = read from the network's stem convolution
    mean: Optional[List[float]] = None  # null = the weights' own, ImageNet's for RGB, else 0
    std: Optional[List[float]] = None  # null = the weights' own, ImageNet's for RGB, else 1
    redirected_relu: int = 0  # redirected ReLU/ReLU6 gradients for this many first steps (0 = exact throughout)


# --- objectives: one schema per kind --------------------------------------------------


@dataclass
class ObjectiveConfig:
    kind: str = MISSING
    negate: bool = False  # minimize instead
    batch: Optional[int] = None  # apply to this batch element only
    weight: float = 1.0


@dataclass
class ChannelObjective(ObjectiveConfig):
    kind: str = "channel"
    layer: str = "blocks.10"
    unit: int = 0


@dataclass
class NeuronObjective(ChannelObjective):
    kind: str = "neuron"
    x: Optional[int] = None
    y: Optional[int] = None


@dataclass
class TokenObjective(ObjectiveConfig):
    kind: str = "token"
    layer: str = "encoder.layers.encoder_layer_11.mlp.1"
    token: int = 0  # 0 = a ViT's class token; prefix + y * W + x = the patch at (x, y)
    unit: Optional[int] = None  # null = the token's mean square


@dataclass
class LayerObjective(ObjectiveConfig):
    kind: str = "layer"
    layer: str = "blocks.10"


@dataclass
class ClassObjective(ObjectiveConfig):
    kind: str = "class_logit"
    unit: int = 281


@dataclass
class DirectionObjective(ObjectiveConfig):
    kind: str = "direction"
    layer: str = "blocks.10"
    units: Optional[List[Any]] = None  # channels, each alone or as [channel, weight]
    vector: Optional[List[float]] = None
    cossim_pow: float = 0.0


@dataclass
class RandomDirectionObjective(ObjectiveConfig):
    kind: str = "random_direction"
    layer: str = "blocks.10"
    seed: int = 0
    cossim_pow: float = 0.0


@dataclass
class InterpolateObjective(ObjectiveConfig):
    kind: str = "interpolate"
    a: Dict[str, Any] = field(default_factory=dict)  # an objective of any kind
    b: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ClipTextObjective(ObjectiveConfig):
    kind: str = "clip_text"
    text: Any = "a photo of a dog"  # a prompt, or a list of prompts (one image each: batch = their count)
    layer: str = "embedding"  # the open_clip image tower's output


@dataclass
class SumObjective(ObjectiveConfig):
    kind: str = "sum"
    terms: List[Dict[str, Any]] = field(default_factory=list)


OBJECTIVE_SCHEMAS: dict[str, type[ObjectiveConfig]] = {
    "channel": ChannelObjective,
    "neuron": NeuronObjective,
    "layer": LayerObjective,
    "deepdream": LayerObjective,
    "class_logit": ClassObjective,
    "class_prob": ClassObjective,
    "direction": DirectionObjective,
    "random_direction": RandomDirectionObjective,
    "token": TokenObjective,
    "interpolate": InterpolateObjective,
    "clip_text": ClipTextObjective,
    "sum": SumObjective,
}


# --- parameterizations: one schema per kind -------------------------------------------


@dataclass
class ParamConfig:
    kind: str = MISSING
    size: int = 128
    # Gradient preconditioners of the pixel parameterization (0 = off); every kind has them
    # so that a sweep over param=pixel,fft may set them (they must stay 0 off pixel).
    grad_blur_sigma: float = 0.0
    grad_normalize: int = 0


@dataclass
class ColourParamConfig(ParamConfig):
    """The options of the parameterizations that draw a random field and colour it."""

    sd: float = 0.01
    decorrelate: bool = True
    value_range: ValueRange = ValueRange.sigmoid
    init_image: Optional[str] = None  # start from this photo (feature accentuation; fft, shared_fft, pixel, laplacian)


@dataclass
class PixelParam(ColourParamConfig):
    kind: str = "pixel"
    decorrelate: bool = False


@dataclass
class FFTParam(ColourParamConfig):
    kind: str = "fft"
    decay: float = 1.0


@dataclass
class SharedFFTParam(FFTParam):
    kind: str = "shared_fft"
    shared: List[int] = field(default_factory=lambda: [2, 4, 8, 16])
    blended: List[int] = field(default_factory=lambda: [8, 16])


@dataclass
class LaplacianParam(ColourParamConfig):
    kind: str = "laplacian"
    levels: int = 4


@dataclass
class CPPNParam(ColourParamConfig):
    kind: str = "cppn"
    sd: float = 1.0
    hidden: int = 24
    layers: int = 8
    lr_scale: float = 0.1
    decorrelate: bool = False


@dataclass
class MacoParam(ParamConfig):
    kind: str = "maco"
    spectrum: Optional[str] = None
    lr_scale: float = 10.0
    decorrelate: bool = True
    value_range: ValueRange = ValueRange.clamp


@dataclass
class VividMacoParam(MacoParam):
    kind: str = "maco_vivid"
    bands: int = 6  # frequency bands with their own gain per colour channel
    max_gain: float = 2.0  # a band's amplitude moves by at most this factor either way (1 = MACO's)
    max_offset: float = 0.25  # the mean colour moves at most this far from grey (decorrelated space)
    prior: float = 10.0  # weight of the photo-statistics prior (0 = off)
    colourfulness: List[float] = field(default_factory=lambda: [45.0, 85.3])  # the photos' range (docs/vivid.md)
    contrast: List[float] = field(default_factory=lambda: [0.175, 0.283])


@dataclass
class RGBAParam(FFTParam):
    kind: str = "rgba"
    background_grid: int = 4  # random background colours on this grid a side, upsampled


@dataclass
class GeneratorParam(ParamConfig):
    kind: str = "generator"
    net: Any = MISSING  # {_target_: importable.Class, ...arguments}
    checkpoint: str = MISSING
    latent_shape: List[int] = field(default_factory=lambda: [128])
    latent_sd: float = 1.0
    output_range: List[float] = field(default_factory=lambda: [-1.0, 1.0])


PARAM_SCHEMAS: dict[str, type[ParamConfig]] = {
    "pixel": PixelParam,
    "fft": FFTParam,
    "shared_fft": SharedFFTParam,
    "laplacian": LaplacianParam,
    "cppn": CPPNParam,
    "maco": MacoParam,
    "maco_vivid": VividMacoParam,
    "generator": GeneratorParam,
    "rgba": RGBAParam,
}


# --- groups of one shape --------------------------------------------------------------


@dataclass
class TransformsConfig:
    pad: int = 0
    pad_mode: PadMode = PadMode.constant
    jitter: int = 0
    # [low, high] or null. Typed Any because OmegaConf cannot merge a nested interpolation
    # (the spectrum experiments' ${spectrum.strengths.${spectrum.level}}) into a typed list;
    # RandomScale checks the value instead.
    scale: Optional[Any] = None
    rotate: float = 0.0
    jitter_after: int = 0
    crops: int = 0  # random crops per image per step, scored as one batch (0 = off)
    crop_size: List[float] = field(default_factory=lambda: [0.5, 1.0])  # crop side, fraction of the image side
    crop_size_end: Optional[List[float]] = None  # the range at the last step (linear from crop_size); null = fixed
    resize: bool = True  # resample to the model's input size last


@dataclass
class RegularizerConfig:
    """Penalties (frequency, priors), preconditioners and batch terms; every weight 0 = off."""

    l1: float = 0.0
    l1_center: float = 0.5
    tv: float = 0.0
    blur: float = 0.0
    blur_sigma: float = 1.0
    bilateral: float = 0.0
    bilateral_sigma: float = 1.0
    bilateral_range: float = 0.1
    param_blur: float = 0.0
    param_blur_every: int = 1
    diversity: float = 0.0
    diversity_layer: Optional[str] = None
    diversity_kind: DiversityKind = DiversityKind.gram
    alignment: float = 0.0
    alignment_layer: Optional[str] = None
    denoiser: float = 0.0
    denoiser_path: Optional[str] = None
    patch: float = 0.0
    patch_bank: Optional[str] = None
    patch_stride: Optional[int] = None
    patch_bank_size: int = 1024
    latent: float = 0.0
    accentuation: float = 0.0  # distance to param.init_image (feature accentuation)
    accentuation_layer: Optional[str] = None  # measured in this layer's activations; null = in pixels
    alpha: float = 0.0  # mean opacity of param=rgba


@dataclass
class OptimizerConfig:
    """A ``torch.optim`` class and its arguments; arguments left at None are not passed."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 0.05
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    betas: Optional[List[float]] = None
    eps: Optional[float] = None
    nesterov: Optional[bool] = None
    momentum_decay: Optional[float] = None  # torch.optim.NAdam's
    # The learning-rate schedule (featviz.schedules.LRSchedule), not passed to the optimizer.
    schedule: Schedule = Schedule.none
    warmup: int = 0  # updates of linear warm-up
    lr_min: float = 0.0  # cosine: the last update's rate, a fraction of lr
    step_every: Optional[int] = None  # step: decay every N updates; null = a quarter of the run
    step_gamma: float = 0.5  # step: the factor at each decay


@dataclass
class LoggerConfig:
    kind: LoggerKind = LoggerKind.wandb
    mode: LoggerMode = LoggerMode.offline
    project: str = "featviz"
    entity: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    log_every: int = 1
    log_images: bool = True
    sweep_table: bool = True


@dataclass
class MetricsConfig:
    enabled: bool = True
    eval_model: Optional[str] = "efficientnet_lite1"
    eval_weights: Optional[str] = "imagenet"
    views: int = 16
    view_seed: int = 0
    view_crop: List[float] = field(default_factory=lambda: [0.7, 0.9])
    view_flip: bool = True
    view_downscale: List[float] = field(default_factory=lambda: [0.5, 0.8])
    view_blur: List[float] = field(default_factory=lambda: [0.5, 1.0])
    hf_cutoff: float = 0.25
    progress_fraction: float = 0.9
    reference: Optional[str] = None
    knn: int = 5
    exemplar_quantile: float = 0.2
    path_layers: int = 8
    path_threshold: float = 0.5


@dataclass
class PerfConfig:
    fold_bn: bool = True
    channels_last: bool = True
    fuse_geometry: bool = True
    compile: bool = False
    amp: Amp = Amp.none
    keep_freed_memory: bool = True
    fuse_activations: bool = True


@dataclass
class UnitsConfig:
    """``featviz units``: which units of which layer, rendered ``batch`` at a time."""

    layer: str = "blocks.2"
    list: Optional[List[int]] = None  # null = every channel of the layer
    batch: int = 8
    kind: UnitKind = UnitKind.channel


@dataclass
class SheetConfig:
    columns: int = 8
    labels: bool = True


@dataclass
class Config:
    """The primary config (``conf/config.yaml``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    objective: Any = MISSING  # typed by its option's schema (OBJECTIVE_SCHEMAS)
    param: Any = MISSING  # typed by its option's schema (PARAM_SCHEMAS)
    transforms: TransformsConfig = field(default_factory=TransformsConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    seed: int = 0
    steps: int = 256
    batch: int = 1
    device: str = "auto"
    snapshots: List[int] = field(default_factory=list)
    log_every: int = 1
    activation_every: int = 8  # the objective on the untransformed image every N steps (0 = off)
    progress: bool = True
    tags: List[str] = field(default_factory=list)
    checkpoint_every: int = 50
    isolate: Optional[bool] = None  # None: on in multirun (a native crash fails one job), off for one run
    threads: Optional[Any] = None  # torch CPU threads: N, auto (the idle cores now) or null = torch's default (the launcher configs set it)
    # Free-form blocks the experiment configs use for their own axes (spectrum.level, figure.layer).
    spectrum: Optional[Any] = None
    figure: Optional[Any] = None
    pipeline: Optional[Any] = None  # the pipeline experiment's rung name (pipeline.technique)
    search: Optional[Any] = None  # +experiment=search: metric, direction, units, constraints, preset (featviz/app/search.py)


@dataclass
class UnitsAppConfig(Config):
    """The primary config of ``featviz units`` (``conf/units.yaml``)."""

    units: UnitsConfig = field(default_factory=UnitsConfig)
    sheet: SheetConfig = field(default_factory=SheetConfig)


@dataclass
class MicroscopeConfig:
    """``featviz microscope``: the units of ``layers`` split into ``shards`` jobs of one multirun."""

    layers: List[str] = field(default_factory=lambda: ["blocks.1"])
    units: Optional[List[int]] = None  # null = every channel of each layer; else these channels of each
    shards: int = 1  # jobs of the multirun (microscope.shard = 0..shards-1 is swept)
    shard: int = 0  # which one this job is
    batch: int = 8  # units per optimization (unit i of a batch = batch element i)
    kind: UnitKind = UnitKind.channel
    facets: int = 0  # extra images per unit, optimized together with the diversity term (0 = none)
    facet_diversity: float = 20.0  # its weight (regularizer.diversity of the facets' render)
    reference: Optional[str] = None  # a folder of photos: each unit's dataset examples and exemplar_ratio
    examples: int = 4  # dataset examples shown per side (top and bottom)
    scorecard: bool = True  # per-unit metrics: robust (metrics.views unseen views), hf_share, spectral_slope, tv
    site: bool = True  # write <sweep>/site/ at the end of the multirun


@dataclass
class MicroscopeAppConfig(Config):
    """The primary config of ``featviz microscope`` (``conf/microscope.yaml``)."""

    microscope: MicroscopeConfig = field(default_factory=MicroscopeConfig)


#: The schema of each primary config (``conf/<name>.yaml``, ``render`` = ``conf/config.yaml``).
APP_SCHEMAS: dict[str, type[Config]] = {"render": Config, "units": UnitsAppConfig, "microscope": MicroscopeAppConfig}


#: Inclusive [low, high] of the numeric options (None: unbounded); ``group.*`` covers every
#: number of that group. Every float must also be finite. Checked by ``app.build.validate``.
RANGES: dict[str, tuple[Optional[float], Optional[float]]] = {
    "steps": (1, None),
    "batch": (1, None),
    "log_every": (1, None),
    "activation_every": (0, None),
    "checkpoint_every": (0, None),
    "threads": (1, None),
    "snapshots": (0, None),
    "model.input_size": (8, None),
    "model.in_channels": (1, None),
    "model.std": (1e-12, None),
    "model.redirected_relu": (0, None),
    "objective.token": (0, None),
    "param.size": (8, None),
    "param.sd": (0, None),
    "param.decay": (0, None),
    "param.levels": (1, None),
    "param.hidden": (1, None),
    "param.layers": (1, None),
    "param.latent_sd": (0, None),
    "param.grad_blur_sigma": (0, None),
    "param.grad_normalize": (0, None),
    "param.background_grid": (1, None),
    "param.bands": (1, None),
    "param.max_gain": (1, None),
    "param.max_offset": (0, None),
    "param.prior": (0, None),
    "param.colourfulness": (0, None),
    "param.contrast": (0, None),
    "transforms.pad": (0, None),
    "transforms.jitter": (0, None),
    "transforms.jitter_after": (0, None),
    "transforms.crops": (0, None),
    "transforms.crop_size": (1e-3, 1),
    "transforms.crop_size_end": (1e-3, 1),
    "regularizer.*": (0, None),  # every weight, sigma, stride and size
    "optimizer.lr": (0, None),
    "optimizer.momentum": (0, None),
    "optimizer.weight_decay": (0, None),
    "optimizer.eps": (0, None),
    "optimizer.momentum_decay": (0, None),
    "optimizer.warmup": (0, None),
    "optimizer.lr_min": (0, 1),
    "optimizer.step_every": (1, None),
    "optimizer.step_gamma": (1e-6, 1),
    "logger.log_every": (1, None),
    "metrics.views": (0, None),
    "metrics.hf_cutoff": (0, 0.5),
    "metrics.progress_fraction": (0, 1),
    "metrics.knn": (1, None),
    "metrics.exemplar_quantile": (0, 0.5),
    "metrics.path_layers": (1, None),
    "metrics.path_threshold": (-1, 1),
    "units.batch": (1, None),
    "sheet.columns": (1, None),
    "microscope.units": (0, None),
    "microscope.shards": (1, None),
    "microscope.shard": (0, None),
    "microscope.batch": (1, None),
    "microscope.facets": (0, None),
    "microscope.facet_diversity": (0, None),
    "microscope.examples": (1, None),
}


def register() -> None:
    """Put every schema in Hydra's ConfigStore (idempotent: storing twice replaces)."""
    cs = ConfigStore.instance()
    # The primary configs' schemas, one group option each: conf/config.yaml picks schema/app=render
    # first in its defaults, and conf/units.yaml overrides that choice in place, so its schema is
    # merged first too and every group merged after it (model=NAME included) keeps its values.
    for name, node in APP_SCHEMAS.items():
        cs.store(group="schema/app", name=name, node=node, package="_global_")
    for kind, schema in PARAM_SCHEMAS.items():
        cs.store(group="schema/param", name=kind, node=schema)
    for kind, schema in OBJECTIVE_SCHEMAS.items():
        cs.store(group="schema/objective", name=kind, node=schema)
