"""The ViT, Swin and ConvNeXt experiments: every sweep point builds on a random-init network,
and its layer and unit fit that network's shapes (the ImageNet weights are not needed for it)."""

from __future__ import annotations

import pytest
from test_experiments import sweep_configs

from featviz.app.build import build_run
from featviz.models import FeatureModel, build_model

_MODELS: dict[str, FeatureModel] = {}


@pytest.mark.parametrize("name", ["vit_mlp", "vit_attention", "swin_convnext"])
def test_every_point_fits_its_network(name: str) -> None:
    jobs = 0
    for overrides, cfg in sweep_configs(name):
        model_name = cfg["model"]["name"]
        if model_name not in _MODELS:
            _MODELS[model_name] = build_model(model_name, weights="none")
        model = _MODELS[model_name]
        parts = build_run({**cfg, "model": {**cfg["model"], "weights": "none"}}, model=model)
        shapes = model.layer_shapes(model.input_size, sorted(parts.objective.layers))
        parts.objective.validate(shapes, cfg["batch"])
        jobs += 1
    assert jobs == 4
