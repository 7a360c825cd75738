"""Measures of a finished visualization: image statistics, robustness to unseen views, diversity.

``image`` scores the image alone (frequency content, spectral slope, colourfulness, contrast,
saturation, TV, convergence),
``views`` how networks score unseen random views of it, ``diversity`` how alike a batch's
images are; ``callback`` adds them all to a run's final metrics.
"""

from featviz.metrics.callback import MetricsCallback
from featviz.metrics.diversity import DiversityMetric
from featviz.metrics.image import (
    colourfulness,
    high_frequency_share,
    image_metrics,
    mean_saturation,
    rms_contrast,
    spectral_slope,
    steps_to_fraction,
)
from featviz.metrics.views import ModerateViews, UnseenViews, class_scores, view_metrics

__all__ = [
    "DiversityMetric", "MetricsCallback", "ModerateViews", "UnseenViews", "class_scores", "colourfulness", "high_frequency_share",
    "image_metrics", "mean_saturation", "rms_contrast", "spectral_slope", "steps_to_fraction", "view_metrics",
]
