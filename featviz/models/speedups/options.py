"""PerfOptions: which speed-ups :meth:`featviz.models.FeatureModel.optimize` may apply, each switchable alone."""

from __future__ import annotations

from dataclasses import dataclass

from featviz.errors import ConfigError


@dataclass(frozen=True)
class PerfOptions:
    """What :meth:`featviz.models.FeatureModel.optimize` may change, each switchable alone.

    Attributes:
        fold_bn: fold eval-mode BatchNorms into the convolutions that feed them.
        channels_last: keep activations in NHWC order, which oneDNN (CPU) and cuDNN (CUDA)
            convolutions run faster, depthwise ones especially.
        compile: wrap the network in ``torch.compile``; meant for CUDA (on the CPU it was
            measured slower, after minutes of compiling).
        amp: ``none`` or ``bf16``: run the network under bfloat16 autocast; meant for CUDA
            (slower on an AMX CPU as measured) and it changes results by bf16 rounding.
        fuse_geometry: resample once for jitter, scale, rotate, jitter and resize together
            (see :class:`featviz.transforms.Compose`); used where transforms are built.
        keep_freed_memory: let this process's allocator keep freed memory for reuse
            (:func:`keep_freed_memory`); process-wide, applied once.
        fuse_activations: run each convolution and the ReLU/ReLU6 after it as one oneDNN
            call on the CPU (:mod:`featviz.models.speedups.fusion`); CUDA runs them unfused.
    """

    fold_bn: bool = True
    channels_last: bool = True
    compile: bool = False
    amp: str = "none"
    fuse_geometry: bool = True
    keep_freed_memory: bool = True
    fuse_activations: bool = True

    def __post_init__(self) -> None:
        if self.amp not in ("none", "bf16"):
            raise ConfigError(f"perf.amp={self.amp!r}; use 'none' or 'bf16'")
