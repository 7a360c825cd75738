"""The activation curve: the objective on the untransformed image, recorded as the run goes.

The loop's ``objective`` is measured on a jittered, rescaled copy of the image, so it is
noisy and it is not what the picture the user looks at does to the unit. The activation is
that second number, measured as the run feeds the network (resized only when the run
resizes: :meth:`RenderContext.clean_input`). It costs one forward pass, so it is taken every ``every`` steps (plus
the snapshot steps and the last step) and added to the step's metrics as ``activation``:
the writer puts it in ``metrics.jsonl`` (the report plots it) and the W&B logger logs it as
``opt/activation``. Place it before both.
"""

from __future__ import annotations

from featviz.callbacks import Callback, RenderContext, StepRecord
from featviz.errors import ConfigError

ACTIVATION = "activation"


class ActivationProbe(Callback):
    """Adds ``activation`` (mean over the batch of the objective on the clean image) to recorded steps."""

    def __init__(self, every: int = 8) -> None:
        if every < 0:
            raise ConfigError(f"activation_every={every} must be >= 0 (0 records no activation curve)")
        self.every = every

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        if self.every == 0:
            return
        if record.step % self.every == 0 or record.snapshot or record.step == ctx.steps:
            record.metrics[ACTIVATION] = float(ctx.evaluate(record.images).mean())
