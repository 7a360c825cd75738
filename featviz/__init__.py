"""featviz: feature visualization by optimization (Olah et al., Distill 2017).

The library needs neither Hydra nor W&B. In a notebook, one line with the command line's
defaults (standard transforms, 128 px FFT image, 256 steps, a progress bar, inline image)::

    import featviz
    result = featviz.render("efficientnet_lite0", "blocks.10:3")

``featviz.render`` is :func:`featviz.quick.render`; the bare loop, with no defaults filled
in, is :func:`featviz.render.render` (``from featviz.render import render``).
"""

import os

# Before anything loads torch (and with it libgomp, which reads these once): OpenMP threads
# that wait for each other spin only briefly, then sleep. On a machine busy with other work a
# long-spinning thread burns the time slice its descheduled partner needs, and the render fell
# to a tenth of its speed or less; sleeping at once (PASSIVE alone) halved the idle speed; a
# short spin first kept 0.9 of it (docs/performance.md, "A busy machine"). Left alone when
# the user set either variable.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ.update(OMP_WAIT_POLICY="PASSIVE", GOMP_SPINCOUNT="10000")

from featviz import objectives, params, regularizers, transforms  # noqa: E402 - after the variable above
from featviz.callbacks import Callback, RenderResult  # noqa: E402
from featviz.errors import FeatvizError  # noqa: E402
from featviz.models import FeatureModel, build_model  # noqa: E402
from featviz.quick import render  # noqa: E402

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
