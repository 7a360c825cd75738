"""Generator images: G(z) of a frozen pretrained generator; only the latent z is optimized."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from featviz.errors import ConfigError, WeightsError
from featviz.params.base import ImageParam


def _load_weights(net: nn.Module, checkpoint: str | os.PathLike[str]) -> None:
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise WeightsError(f"param.checkpoint={str(path)!r} does not exist; point it at the generator's saved state_dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"param.checkpoint={str(path)!r} is not a torch state_dict ({exc}); save it with torch.save(net.state_dict(), path)") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"param.checkpoint does not fit param.net ({first}); use the _target_ and arguments it was trained with") from None


class GeneratorImage(ImageParam):
    """Images ``G(z)`` of a frozen pretrained generator; only the latent ``z`` is optimized.

    ``net`` is the generator module (the app builds it from ``param.net._target_``)
    and ``checkpoint`` its weights (a ``state_dict`` file, or one under a ``state_dict``
    key); a config mapping needs a checkpoint, since a random generator is no prior. ``z``
    has shape ``[batch, *latent_shape]`` (e.g. ``[128]``, or ``[100, 1, 1]`` for DCGAN) and
    starts from ``N(0, latent_sd**2)``. The generator's output, in ``output_range``, is
    mapped to [0, 1], made RGB if it is grey and resized to ``size``.

    The generator is the prior: whatever ``z`` is, the image is one the generator can
    draw. :class:`featviz.regularizers.priors.LatentPrior` (``regularizer.latent``) keeps ``z`` in the
    region the generator was trained on.
    """

    def __init__(
        self,
        net: nn.Module,
        checkpoint: str | os.PathLike[str] | None = None,
        size: int = 128,
        batch: int = 1,
        latent_shape: Sequence[int] = (128,),
        latent_sd: float = 1.0,
        output_range: Sequence[float] = (-1.0, 1.0),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(size, batch, decorrelate=False, value_range="clamp")
        if not isinstance(net, nn.Module):
            raise ConfigError(f"param.net must be a torch.nn.Module (the app builds one from its _target_), got {type(net).__name__}")
        self.net = net
        if checkpoint is not None:
            _load_weights(self.net, checkpoint)
        self.net.requires_grad_(False)
        self.net.eval()
        lo, hi = (float(v) for v in output_range)
        if not hi > lo:
            raise ConfigError(f"param.output_range={list(output_range)} must be [low, high] with high > low (e.g. [-1, 1] for tanh)")
        self.output_range = (lo, hi)
        shape = [int(s) for s in latent_shape]
        if not shape or min(shape) < 1:
            raise ConfigError(f"param.latent_shape={list(latent_shape)} must be positive sizes, e.g. [128]")
        self.latent = nn.Parameter(torch.randn(self.batch, *shape, generator=generator) * float(latent_sd))

    def train(self, mode: bool = True) -> GeneratorImage:
        """Keep the generator in eval mode (its batch norms use their running statistics)."""
        super().train(mode)
        self.net.eval()
        return self

    def latent_penalty(self) -> torch.Tensor:
        """``0.5 * mean(z**2)`` per image: the negative log density of a standard normal prior."""
        return 0.5 * self.latent.pow(2).flatten(1).mean(1)

    def forward(self) -> torch.Tensor:
        out = self.net(self.latent)
        if out.dim() != 4 or out.shape[1] not in (1, 3) or out.shape[0] != self.batch:
            raise ConfigError(f"param.net returned shape {tuple(out.shape)}; a generator must return images [B, 1 or 3, H, W]")
        lo, hi = self.output_range
        images = ((out - lo) / (hi - lo)).clamp(0.0, 1.0)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-2:] != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return images
