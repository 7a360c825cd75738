"""Measures of a finished visualization: image statistics, robustness to unseen views, diversity.

``image`` scores the image alone (frequency content, spectral slope, TV, convergence),
``views`` how networks score unseen random views of it, ``diversity`` how alike a batch's
images are; ``callback`` adds them all to a run's final metrics.
"""

from featviz.metrics.callback import MetricsCallback
from featviz.metrics.diversity import DiversityMetric
from featviz.metrics.image import (
    high_frequency_share,
    image_metrics,
    spectral_slope,
    steps_to_fraction,
)
from featviz.metrics.views import UnseenViews, class_scores, view_metrics

__all__ = [
    "DiversityMetric", "MetricsCallback", "UnseenViews", "class_scores", "high_frequency_share", "image_metrics",
    "spectral_slope", "steps_to_fraction", "view_metrics",
]
