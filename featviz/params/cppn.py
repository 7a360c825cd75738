"""CPPN images (Mordvintsev et al. 2018): colour as a smooth per-pixel network of (x, y)."""

from __future__ import annotations

import math

import torch
from torch import nn

from featviz.errors import ConfigError
from featviz.params.base import ImageParam, ValueRange, check_lr_scale


def composite_activation(x: torch.Tensor) -> torch.Tensor:
    """``atan(x)`` and ``atan(x)**2``, rescaled to about unit variance, stacked on channels.

    The CPPN activation of Mordvintsev et al. (2018): bounded, smooth, and with the square
    the network can make symmetric bands as easily as edges.
    """
    a = torch.atan(x)
    return torch.cat([a / 0.67, a * a / 0.6], dim=1)


class CPPNImage(ImageParam):
    """A compositional pattern-producing network: colour as a smooth function of position.

    ``layers`` 1x1 layers of ``hidden`` units with :func:`composite_activation` map the
    coordinates ``(x, y)`` (uniform on ``[-sqrt 3, sqrt 3]``, unit variance) to three
    pre-squash channels. Every batch element has its own weights. Weights start with
    variance ``1 / fan_in`` so activations keep their scale with depth, the output layer's
    times ``sd``. ``sd=1`` (a colourful first pattern) is the default because a near-grey
    start (``sd=0.1``) was measured to collapse to one flat colour under the standard
    transforms (objective 5.2 against 22.6 at 128 steps, docs/learned_priors.md).

    A CPPN's weights move the whole image at once, so they need about ten times smaller
    steps than pixels (Lucid's notebook uses Adam at 0.005): the weights are stored divided
    by ``lr_scale`` (default 0.1), which turns the run's ``optimizer.lr`` into that step.
    """

    def __init__(
        self,
        size: int = 128,
        batch: int = 1,
        sd: float = 1.0,
        hidden: int = 24,
        layers: int = 8,
        lr_scale: float = 0.1,
        decorrelate: bool = False,
        value_range: ValueRange = "sigmoid",
        generator: torch.Generator | None = None,
        channels: int = 3,
    ) -> None:
        super().__init__(size, batch, decorrelate, value_range, channels)
        hidden, layers = int(hidden), int(layers)
        if hidden < 1 or layers < 1:
            raise ConfigError(f"param.hidden={hidden} and param.layers={layers} must be >= 1 (24 and 8 are typical)")
        self.lr_scale = check_lr_scale(lr_scale)
        coords = (torch.arange(self.size, dtype=torch.float32) + 0.5) / self.size * 2 - 1
        y, x = torch.meshgrid(coords * math.sqrt(3), coords * math.sqrt(3), indexing="ij")
        self.register_buffer("coords", torch.stack([x, y])[None], persistent=False)
        fan_ins = [2] + [2 * hidden] * layers
        outs = [hidden] * layers + [self.channels]
        weights = []
        for i, (fan_in, out) in enumerate(zip(fan_ins, outs)):
            std = math.sqrt(1.0 / fan_in) * (sd if i == layers else 1.0)
            weights.append(nn.Parameter(torch.randn(self.batch, out, fan_in, generator=generator) * std / self.lr_scale))
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(self.batch, out)) for out in outs)

    def forward(self) -> torch.Tensor:
        h = self.coords.expand(self.batch, -1, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("boi,bihw->bohw", w * self.lr_scale, h) + (b * self.lr_scale)[:, :, None, None]
            if i < last:
                h = composite_activation(h)
        return self.to_rgb(h)
