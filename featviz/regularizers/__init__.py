"""Regularizers: what keeps an optimized image from becoming high-frequency noise.

``frequency`` holds the article's frequency penalties (L1, total variation, blur,
bilateral), ``priors`` the learned priors (denoiser, patch bank, generator latent) and
``preconditioners`` the callbacks that change how the parameter moves (gradient blur and
normalization, parameter blur). Penalties are :class:`Regularizer`: ``weight * penalty(images)``.
"""

from featviz.regularizers.base import FilterPull, Regularizer
from featviz.regularizers.frequency import (
    L1,
    Bilateral,
    Blur,
    TotalVariation,
    build_regularizers,
)
from featviz.regularizers.preconditioners import (
    GradientBlur,
    GradientNormalize,
    ParamBlur,
    Preconditioner,
    build_preconditioners,
)
from featviz.regularizers.priors import (
    DenoiserPrior,
    LatentPrior,
    PatchPrior,
    build_priors,
)

__all__ = [
    "Bilateral", "Blur", "DenoiserPrior", "FilterPull", "GradientBlur", "GradientNormalize", "L1", "LatentPrior", "ParamBlur",
    "PatchPrior", "Preconditioner", "Regularizer", "TotalVariation", "build_preconditioners", "build_priors", "build_regularizers",
]
