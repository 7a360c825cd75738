"""``featviz.render`` for a notebook: the command line's defaults in one call.

:func:`featviz.render.render` is the bare loop: no transforms unless given, no progress
unless asked. A notebook user wants what ``python -m featviz`` does, as Lucent's
``render_vis(model, "layer:unit")`` gives it: the embedded network with its speed-ups, a
128 px decorrelated FFT image, the standard transformation-robustness stack resized to the
network's input, 256 Adam steps, a progress bar, and a result that shows itself::

    import featviz
    result = featviz.render("efficientnet_lite0", "blocks.10:3")   # the image appears below the cell
    result = featviz.render(model, "blocks.8:7", steps=512, regularizers=[featviz.regularizers.TotalVariation(0.25)])

It takes the loop's arguments in the loop's order (a model, an objective, then keywords), so
code written for the loop runs unchanged; every argument given wins over these defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featviz.callbacks import Callback, RenderResult
from featviz.errors import ConfigError
from featviz.models import LOGITS, FeatureModel, build_model
from featviz.models.speedups.options import PerfOptions
from featviz.objectives import Objective, channel, class_logit
from featviz.params import FFTImage
from featviz.progress import ProgressBar
from featviz.render import render as render_loop
from featviz.transforms import Transform, build_transforms

DEFAULT_MODEL = "efficientnet_lite0"
# conf/transforms/standard.yaml to the letter (pad_mode included: the pad's default, reflect, gave other bytes than the command line), then the resize to the network's side.
STANDARD = {"pad": 12, "pad_mode": "constant", "jitter": 8, "scale": (0.9, 1.1), "rotate": 10.0, "jitter_after": 4}
SIZE = 128
STEPS = 256


@functools.lru_cache(maxsize=2)
def cached_model(name: str) -> FeatureModel:
    """A registry model built once per session (a notebook renders many units of one network)."""
    return build_model(name)


def parse_objective(objective: str | Objective) -> Objective:
    """``"layer:unit"`` is that channel (Lucent's spelling), ``"logits:281"`` that class's logit."""
    if isinstance(objective, Objective):
        return objective
    layer, sep, unit = str(objective).rpartition(":")
    if not sep or not layer or not unit.strip().isdigit():
        raise ConfigError(f"objective {objective!r}: write 'layer:unit' (e.g. 'blocks.10:3', 'logits:281') or pass an objective")
    return class_logit(int(unit)) if layer == LOGITS else channel(layer, int(unit))


def standard_transforms(model: FeatureModel) -> Transform:
    """The command line's default stack (``transforms=standard``), ending at the network's side."""
    return build_transforms(**STANDARD, resize=model.input_size, fuse_geometry=True)


def render(
    model: str | FeatureModel | nn.Module,
    objective: str | Objective,
    *,
    size: int = SIZE,
    batch: int = 1,
    steps: int = STEPS,
    seed: int = 0,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    **kwargs: Any,
) -> RenderResult:
    """Render ``objective`` on ``model`` with ``python -m featviz``'s defaults.

    Args:
        model: a registry name (built once per session, with the CLI's speed-ups), a
            :class:`FeatureModel`, or a plain ``nn.Module`` (wrapped with ImageNet's mean/std
            at 224 px; wrap it yourself to say otherwise).
        objective: ``"layer:unit"`` (a channel), ``"logits:N"`` (a class) or any objective.
        size: side of the default FFT image (ignored with ``param=``).
        batch: images optimized together (ignored with ``param=``).
        steps: optimizer updates.
        seed: seeds the image's initial values and every random transform.
        progress: a progress bar (a notebook widget, a terminal bar, or plain lines in a log).
        callbacks: more watchers of the run.
        **kwargs: anything else :func:`featviz.render.render` takes (``param``, ``transforms``,
            ``regularizers``, ``optimizer``, ``device``, ``generator``, ...), over these defaults.

    Returns:
        The :class:`RenderResult`; in a notebook it displays as its images (``result.show()``).
    """
    goal = parse_objective(objective)
    if isinstance(model, str):
        net = cached_model(model)
        net.optimize(PerfOptions(), keep=goal.layers)
    elif isinstance(model, FeatureModel):
        net = model
    elif isinstance(model, nn.Module):
        net = FeatureModel(model)
    else:
        raise ConfigError(f"model {model!r}: pass a registry name (e.g. 'efficientnet_lite0'), a FeatureModel or an nn.Module")
    if "param" not in kwargs:
        # One generator for the image's init and the transforms, as the command line does.
        generator = kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
        kwargs["param"] = FFTImage(size, batch=batch, generator=generator)
    kwargs.setdefault("transforms", standard_transforms(net))
    watchers = [*callbacks, *([ProgressBar()] if progress else [])]
    return render_loop(net, goal, steps=steps, seed=seed, callbacks=watchers, **kwargs)
