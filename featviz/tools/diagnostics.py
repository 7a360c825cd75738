"""Diagnostics behind two of the article's figures, computed on any model.

* **Checkerboard gradients** ("The Enemy of Feature Visualization"): the magnitude of the
  input gradient of one unit of each layer. Strided convolutions and pooling sample the
  input unevenly (with kernel 3 and stride 2, every other input pixel feeds two outputs
  instead of one), so the gradient magnitude repeats with the stride: a checkerboard that
  plain pixel-space optimization turns into high-frequency patterns.
  :func:`phase_contrast` puts a number on it.
* **Steepest-descent directions** ("Preconditioning and Parameterization"): for one image,
  the direction in which the objective rises fastest under the L-infinity metric
  (``sign(g)``, as in adversarial work), the L2 metric (the plain gradient ``g``) and in
  the decorrelated space (``P P^T g``, where ``P`` maps the 1/f-scaled, colour-decorrelated
  Fourier parameters to pixels). The article's point: L-inf adds high frequencies,
  the decorrelated direction removes them (on EfficientNet-Lite0 the second half holds
  by a factor of ~100 in high-frequency share; the plain gradient is already about as
  high-frequency as its sign, see docs/spectrum.md).

``python -m featviz checkerboard ...`` and ``python -m featviz directions ...`` write the
images and the labelled figures (:func:`checkerboard_figure`, :func:`directions_figure`);
the other functions here need neither Hydra nor files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from featviz.errors import ConfigError
from featviz.metrics.image import high_frequency_share
from featviz.models import LOGITS, FeatureModel
from featviz.objectives.base import Objective
from featviz.objectives.units import Channel
from featviz.params.fourier import FFTImage
from featviz.tools.figures import figure, save_figure


def spatial_layers(model: FeatureModel, size: int) -> list[str]:
    """Default layers for the checkerboard figure: one per change of activation shape.

    Among the top two levels of module names (``blocks.3``, ``inception4a``, ``conv1``) it
    keeps each layer whose output differs in resolution or width from the previous one,
    so every stride (where checkerboards appear) and every new stage is represented.
    """
    names = [n for n in model.layer_names if n != LOGITS and n.count(".") <= 1]
    shapes = model.layer_shapes(size, names)
    picked: list[str] = []
    previous: tuple[int, ...] | None = None
    for name in names:
        shape = shapes.get(name)
        if shape is None or len(shape) != 3 or min(shape[1:]) < 2:
            continue
        if shape != previous:
            picked.append(name)
        previous = shape
    return picked


def gradient_magnitude(model: FeatureModel, layer: str, images: torch.Tensor, unit: int | None = None) -> tuple[torch.Tensor, int]:
    """Mean over ``images`` of ``|d mean(layer[unit]) / d input|`` (RGB norm): ``[H, W]``.

    ``unit=None`` takes the channel with the highest mean activation on ``images``, so the
    gradient is not zero because the unit happens to be switched off everywhere.
    Returns the map and the unit used.
    """
    x = images.detach().clone().requires_grad_(True)
    act = model(x, [layer])[layer]
    if act.dim() != 4:
        raise ConfigError(f"layer {layer!r} has no spatial output ({tuple(act.shape[1:])}); pick a convolutional layer")
    if unit is None:
        unit = int(act.detach().mean(dim=(0, 2, 3)).argmax())
    elif not 0 <= unit < act.shape[1]:
        raise ConfigError(f"unit {unit} is out of range for layer {layer!r} with {act.shape[1]} channels; use 0..{act.shape[1] - 1}")
    Channel(layer, unit).score({layer: act}).sum().backward()
    assert x.grad is not None
    return x.grad.norm(dim=1).mean(0), unit


def phase_contrast(magnitude: torch.Tensor, period: int = 2, border: int = 8) -> float:
    """How strongly ``magnitude [H, W]`` repeats with ``period``: 0 for none, larger = checkerboard.

    The map is averaged over each of the ``period x period`` pixel phases (position modulo
    the period); the result is the spread (max - min) of those averages over their mean.
    ``border`` pixels are left out on each side because padding distorts them.
    """
    m = magnitude[border : magnitude.shape[0] - border, border : magnitude.shape[1] - border]
    h, w = (m.shape[0] // period) * period, (m.shape[1] // period) * period
    if h == 0 or w == 0:
        raise ConfigError(f"a {tuple(magnitude.shape)} map is too small for period {period} and border {border}")
    phases = m[:h, :w].reshape(h // period, period, w // period, period).mean(dim=(0, 2))
    mean = phases.mean()
    return float((phases.max() - phases.min()) / mean) if mean > 0 else 0.0


def probe_images(kind: str, size: int, samples: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inputs to differentiate at: ``grey`` (one flat 0.5 image) or ``noise`` (uniform).

    Grey is the default: every unit then sees the same input everywhere, so the gradient
    map shows the network's structure alone, and the stride pattern comes out clean.
    Noise (averaged over ``samples`` images) shows the same periods under random gating.
    """
    if kind == "grey":
        return torch.full((1, 3, size, size), 0.5)
    if kind == "noise":
        if samples < 1:
            raise ConfigError(f"samples={samples} must be >= 1")
        return torch.rand(samples, 3, size, size, generator=generator)
    raise ConfigError(f"input {kind!r}: use grey or noise")


def checkerboard_maps(
    model: FeatureModel, layers: Sequence[str], images: torch.Tensor, unit: int | None = None
) -> dict[str, dict[str, object]]:
    """Gradient-magnitude map (``[H, W]``), unit, stride and phase contrast of each layer."""
    size = images.shape[-1]
    images = images.to(model.mean.device)
    shapes = model.layer_shapes(tuple(images.shape[-2:]), list(layers))
    out: dict[str, dict[str, object]] = {}
    for layer in layers:
        mag, used = gradient_magnitude(model, layer, images, unit)
        shape = shapes.get(layer, ())
        out[layer] = {
            "map": mag.cpu(),
            "unit": used,
            "stride": max(1, round(size / shape[-1])) if len(shape) == 3 else 1,
            "phase_contrast_2": phase_contrast(mag, 2),
        }
    return out


def magnitude_image(magnitude: torch.Tensor, low: float = 0.01, high: float = 0.99) -> torch.Tensor:
    """``[H, W]`` magnitude -> ``[3, H, W]`` grey image stretched between two quantiles.

    The maps of deep layers vary by tens of per cent around a large mean, so scaling by the
    maximum alone would show a flat grey; quantiles rather than min/max keep a few hot
    border pixels from setting the scale.
    """
    m = magnitude.float()
    lo, hi = torch.quantile(m.flatten(), low), torch.quantile(m.flatten(), high)
    return ((m - lo) / (hi - lo).clamp_min(1e-30)).clamp(0, 1).expand(3, -1, -1)


def checkerboard_figure(maps: dict[str, dict[str, object]], path: str | Path, columns: int = 4) -> Path:
    """All layers' maps as one labelled figure: layer, unit, stride and phase contrast above
    each panel, and each panel's colour scale (the gradient magnitude, 1-99 % quantiles)."""
    cols = min(columns, len(maps))
    rows = -(-len(maps) // cols)
    fig = figure(3.0 * cols, 2.7 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (layer, info) in zip((a for row in axes for a in row), maps.items()):
        m = info["map"].float()  # type: ignore[union-attr]
        lo, hi = (float(torch.quantile(m.flatten(), q)) for q in (0.01, 0.99))
        shown = ax.imshow(m.numpy(), cmap="magma", vmin=lo, vmax=max(hi, lo + 1e-30))
        ax.set_title(f"{layer}  unit {info['unit']}  stride {info['stride']}\nphase contrast {info['phase_contrast_2']:.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        bar = fig.colorbar(shown, ax=ax, shrink=0.8)
        bar.ax.tick_params(labelsize=6)
        bar.set_label("|d unit / d input|", fontsize=7)
    for ax in [a for row in axes for a in row][len(maps) :]:
        ax.set_axis_off()
    return save_figure(fig, path)


# --- steepest-descent directions ------------------------------------------------------


def decorrelated_map(size: int, decay: float = 1.0) -> FFTImage:
    """An :class:`FFTImage` whose buffers define ``P`` (1/f^decay scale, colour matrix)."""
    # sd=0: only the buffers matter; the own generator keeps the global RNG untouched.
    return FFTImage(size, batch=1, sd=0.0, decay=decay, decorrelate=True, generator=torch.Generator())


def _decode(fft: FFTImage, z: torch.Tensor) -> torch.Tensor:
    """The linear part of the decorrelated parameterization: ``P z`` (before the squash)."""
    spec = torch.complex(z[0], z[1]) * fft.scale
    image = torch.fft.irfft2(spec, s=(fft.size, fft.size), norm="ortho")
    return torch.einsum("bchw,dc->bdhw", image, fft.color)


def objective_gradient(model: FeatureModel, objective: Objective, image: torch.Tensor) -> torch.Tensor:
    """``d objective / d image`` for one ``[1, 3, H, W]`` image in [0, 1], seen at its own size."""
    x = image.detach().clone().requires_grad_(True)
    model.check_layers(objective.layers)
    objective.validate(model.layer_shapes(tuple(x.shape[-2:]), sorted(objective.layers)), 1)
    objective(model(x, objective.layers)).sum().backward()
    assert x.grad is not None
    return x.grad


def steepest_directions(model: FeatureModel, objective: Objective, image: torch.Tensor, decay: float = 1.0) -> dict[str, torch.Tensor]:
    """Directions of steepest ascent of ``objective`` at ``image`` under three metrics.

    Returns ``{"linf": sign(g), "l2": g, "decorrelated": P P^T g}``, each ``[1, 3, H, W]``
    and scaled to max |value| = 1. ``P^T g`` is the gradient with respect to the
    decorrelated parameters (by autograd through the linear map), and ``P`` takes that
    step back to pixels: the pixel-space change one gradient step in the decorrelated
    space makes.
    """
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[-1] != image.shape[-2]:
        raise ConfigError(f"image of shape {tuple(image.shape)}: need one square RGB image [1, 3, S, S]")
    g = objective_gradient(model, objective, image)
    fft = decorrelated_map(image.shape[-1], decay).to(g)
    z = torch.zeros(2, 1, 3, *fft.scale.shape[-2:], device=g.device, requires_grad=True)
    (pt_g,) = torch.autograd.grad(_decode(fft, z), z, grad_outputs=g)
    directions = {"linf": torch.sign(g), "l2": g, "decorrelated": _decode(fft, pt_g).detach()}
    return {k: v / v.abs().max().clamp_min(1e-30) for k, v in directions.items()}


def direction_image(direction: torch.Tensor, quantile: float = 0.99) -> torch.Tensor:
    """A signed direction as an image: grey = 0, per-channel sign as colour.

    Values are divided by the ``quantile`` of their magnitude (then clipped), so a plain
    gradient, whose largest entries are rare spikes, is not shown as a flat grey.
    """
    top = torch.quantile(direction.abs().flatten().float(), quantile).clamp_min(1e-30)
    return (0.5 + 0.5 * direction / top).clamp(0, 1)


DIRECTION_TITLES = {
    "image": "image (the point x)",
    "linf": "L-inf: sign(g)",
    "l2": "L2: g",
    "decorrelated": "decorrelated: P P^T g",
}


def directions_figure(panels: dict[str, torch.Tensor], path: str | Path) -> Path:
    """The image and its three directions side by side, titled, each with its high-frequency share.

    Directions are shown as :func:`direction_image` draws them (grey = 0); the share of
    power above half Nyquist is the number the article's argument is about.
    """
    fig = figure(2.6 * len(panels), 3.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, img) in zip(axes, panels.items()):
        ax.imshow(img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        share = float(high_frequency_share(img[None].float().cpu()).mean())
        ax.set_title(f"{DIRECTION_TITLES.get(name, name)}\nhigh-freq. share {share:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def noise_image(size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A smooth random test image with natural-image (1/f) statistics, ``[1, 3, S, S]``."""
    return FFTImage(size, batch=1, sd=1.0, generator=generator)().detach()


__all__ = [
    "checkerboard_figure",
    "checkerboard_maps",
    "directions_figure",
    "probe_images",
    "direction_image",
    "gradient_magnitude",
    "magnitude_image",
    "noise_image",
    "phase_contrast",
    "spatial_layers",
    "steepest_directions",
]
