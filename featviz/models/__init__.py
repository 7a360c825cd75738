"""Models: the registry, the frozen layer-returning wrapper, and the embedded network."""

from featviz.models.feature_model import LOGITS, FeatureModel
from featviz.models.registry import available_models, build_model
from featviz.models.weights import load_state_dict_file

__all__ = ["LOGITS", "FeatureModel", "available_models", "build_model", "load_state_dict_file"]
