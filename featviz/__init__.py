"""featviz: feature visualization by optimization (Olah et al., Distill 2017).

The library needs neither Hydra nor W&B::

    from featviz import render, build_model, objectives, params, transforms
    model = build_model("efficientnet_lite0")
    result = render(model, objectives.channel("blocks.10", 3), steps=256)
"""

from featviz import objectives, params, regularizers, transforms
from featviz.callbacks import Callback, RenderResult
from featviz.errors import FeatvizError
from featviz.models import FeatureModel, build_model
from featviz.render import render

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "FeatureModel",
    "FeatvizError",
    "RenderResult",
    "build_model",
    "objectives",
    "params",
    "regularizers",
    "render",
    "transforms",
]
