"""Metrics of a finished render: how strong, how natural and how robust its image is.

The render loop only records the training objective, measured on randomly transformed
images. That number alone cannot tell a feature visualization from an adversarial pattern:
plain pixel optimization reaches a high objective with high-frequency noise that means
nothing to the network once the image is slightly blurred, rescaled or cropped (the
article's "Preconditioning and Parameterization" and "Transformation Robustness"). The
metrics here make that difference measurable:

* ``objective_clean``: the objective on the untransformed final image;
* ``hf_share`` and ``spectral_slope``: how much power sits at high spatial frequencies, and
  the log-log slope of the radially averaged power spectrum (1/f-amplitude noise -2,
  white noise 0; the scikit-image sample photos measure -2.2 to -3.1);
* ``tv``: total variation, the same definition as the TV regularizer;
* ``steps_to_90``: how fast the objective got there;
* ``robust/*``: the objective (and, for class objectives, top-1 / top-5 / probability of
  the target class) on random *views* of the final image made with transformations the
  optimization never saw (crop-zoom past the training scales, flip, down-sampling, blur);
* ``transfer/*``: top-1 / top-5 / probability of the target class under a second,
  independent network (``eval_model``), on the final image.

Everything is a pure function of tensors and a generator; :class:`MetricsCallback` wires
them into :func:`featviz.render.render` and adds them to ``result.final`` in ``on_end``,
so a writer or logger placed after it records them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from featviz.errors import ConfigError, WeightsError
from featviz.models import LOGITS, FeatureModel, build_model
from featviz.objectives import Channel, ClassLogit, Neuron, Objective, OnBatch, Offset, Scaled, Sum
from featviz.regularizers import gaussian_blur, total_variation
from featviz.render import Callback, RenderContext, RenderResult

log = logging.getLogger("featviz")

__all__ = [
    "MetricsCallback",
    "UnseenViews",
    "build_metrics_callback",
    "class_scores",
    "class_targets",
    "high_frequency_share",
    "image_metrics",
    "power_spectrum",
    "radial_power",
    "spectral_slope",
    "steps_to_fraction",
    "total_variation",
    "view_metrics",
]


# --- spectra ---------------------------------------------------------------------------


def _frequencies(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Radial frequency of each bin of a full 2-D FFT, in cycles per pixel (Nyquist = 0.5)."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.fftfreq(w, device=device)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Power of each 2-D frequency bin, averaged over colour channels: ``[B, H, W]``.

    Each channel has its mean removed and is multiplied by a 2-D Hann window first. Without
    the window, the jump between opposite borders of a non-periodic image (every pixel-
    parameterized one) adds a cross of spurious 1/f^2 power; FFT-parameterized images are
    periodic and would not get it, so the comparison would be biased. The windowed image is
    re-centred so no DC power leaks into the lowest bins. Channels are averaged in power,
    not converted to luminance first, so chromatic high-frequency noise still counts.
    """
    x = images.detach().float()
    h, w = x.shape[-2:]
    win = torch.hann_window(h, periodic=False, device=x.device)[:, None] * torch.hann_window(w, periodic=False, device=x.device)[None, :]
    x = (x - x.mean(dim=(-2, -1), keepdim=True)) * win
    x = x - x.sum(dim=(-2, -1), keepdim=True) / win.sum() * win
    return torch.fft.fft2(x).abs().pow(2).mean(dim=1)


def radial_power(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum: ``(freqs [K], power [B, K])``.

    Bin ``k`` (1..min(H, W)/2) holds the mean power of the FFT bins whose radius rounds to
    ``k / min(H, W)`` cycles per pixel; the corners past Nyquist are left out because only
    part of each ring is sampled there.
    """
    p = power_spectrum(images)
    h, w = p.shape[-2:]
    n = min(h, w)
    k = torch.round(_frequencies(h, w, p.device) * n).long().flatten()
    nbins = int(k.max()) + 1
    sums = torch.zeros(p.shape[0], nbins, device=p.device).index_add_(1, k, p.flatten(1))
    counts = torch.zeros(nbins, device=p.device).index_add_(0, k, torch.ones_like(k, dtype=torch.float32))
    top = n // 2
    freqs = torch.arange(1, top + 1, device=p.device, dtype=torch.float32) / n
    return freqs, (sums / counts)[:, 1 : top + 1]


def spectral_slope(images: torch.Tensor, min_bin: int = 2) -> torch.Tensor:
    """Least-squares slope of log power against log frequency, per image: ``[B]``.

    Power falls roughly as ``1/f**2`` in natural scenes (slope -2; compressed or defocused
    photos fall faster); white noise is flat (slope 0). Bins below ``min_bin`` are left out because the window spreads the lowest
    frequencies into each other.
    """
    freqs, power = radial_power(images)
    if freqs.numel() - (min_bin - 1) < 2:
        raise ConfigError(f"image of {images.shape[-1]} px is too small for a spectral slope; render at param.size >= 8")
    lf = freqs[min_bin - 1 :].log()
    lp = power[:, min_bin - 1 :].clamp_min(1e-20).log()
    lf_c = lf - lf.mean()
    return (lp - lp.mean(dim=1, keepdim=True)) @ lf_c / (lf_c @ lf_c)


def _check_cutoff(cutoff: float) -> None:
    if not 0 < cutoff < 0.5 * math.sqrt(2):
        raise ConfigError(f"metrics.hf_cutoff={cutoff} must be in (0, 0.707) cycles per pixel (0.25 = half Nyquist)")


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Fraction of an image's (non-DC) power above ``cutoff`` cycles per pixel: ``[B]``.

    With the default half-Nyquist cut-off, white noise scores ``1 - pi * 0.25**2 = 0.80``
    (the share of the frequency square outside the circle) and natural photos score a few
    per cent.
    """
    _check_cutoff(cutoff)
    p = power_spectrum(images)
    r = _frequencies(*p.shape[-2:], p.device)
    total = p.flatten(1).sum(1)
    high = (p * (r > cutoff)).flatten(1).sum(1)
    return torch.where(total > 0, high / total.clamp_min(1e-30), torch.zeros_like(total))


# --- convergence -----------------------------------------------------------------------


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ConfigError(f"metrics.progress_fraction={fraction} must be in (0, 1]")


def steps_to_fraction(history: Sequence[Mapping[str, float]], fraction: float = 0.9, key: str = "objective") -> float:
    """First recorded step at which ``key`` covered ``fraction`` of its way from start to end.

    "90 % of the final objective" read literally breaks when the objective starts above
    zero or ends below it, so the threshold is ``start + fraction * (final - start)``, which
    is the literal reading when the start is 0. NaN when the run made no progress. The
    resolution is the run's ``log_every``.
    """
    _check_fraction(fraction)
    if not history:
        return math.nan
    start, final = history[0][key], history[-1][key]
    if not final > start:
        return math.nan
    threshold = start + fraction * (final - start)
    return float(next(h["step"] for h in history if h[key] >= threshold))


# --- class targets ---------------------------------------------------------------------


def class_targets(objective: Objective, batch: int) -> list[int | None]:
    """The ImageNet class each batch element is pushed towards, or None.

    A class term is a :class:`ClassLogit` / :class:`ClassProb`, or a neuron / channel on
    ``logits``, with a positive weight; :meth:`Objective.batch` restricts it to one image.
    An image with no class term or with several different ones has no single target.
    """
    found: list[set[int]] = [set() for _ in range(batch)]

    def walk(obj: Objective, sign: float, only: int | None) -> None:
        if isinstance(obj, Sum):
            for t in obj.terms:
                walk(t, sign, only)
        elif isinstance(obj, Scaled):
            walk(obj.inner, sign * obj.factor, only)
        elif isinstance(obj, Offset):
            walk(obj.inner, sign, only)
        elif isinstance(obj, OnBatch):
            walk(obj.inner, sign, obj.index)
        elif isinstance(obj, (ClassLogit, Neuron, Channel)) and obj.layer == LOGITS and sign > 0:
            for i in range(batch) if only is None else [only]:
                found[i].add(obj.unit)

    walk(objective, 1.0, None)
    return [next(iter(s)) if len(s) == 1 else None for s in found]


def class_scores(logits: torch.Tensor, targets: Sequence[int | None]) -> dict[str, float]:
    """Top-1, top-5 and softmax probability of each image's target class, averaged.

    Images without a target are left out; an empty dict when none has one.
    """
    idx = [i for i, t in enumerate(targets) if t is not None]
    if not idx:
        return {}
    rows = logits[idx].float()
    tgt = torch.tensor([targets[i] for i in idx], device=rows.device)
    rank = (rows > rows.gather(1, tgt[:, None])).sum(1)  # classes strictly above the target
    prob = torch.softmax(rows, dim=1).gather(1, tgt[:, None])[:, 0]
    return {
        "top1": float((rank < 1).float().mean()),
        "top5": float((rank < 5).float().mean()),
        "prob": float(prob.mean()),
    }


# --- unseen views ----------------------------------------------------------------------


def _draw(generator: torch.Generator, low: float, high: float) -> float:
    return float(torch.rand((), generator=generator)) * (high - low) + low


@dataclass(frozen=True)
class UnseenViews:
    """Random views of an image made with transformations the render did not train on.

    One view: crop a square of ``crop`` x the side at a random position (a zoom of 1.11 to
    1.43 with the defaults, past the standard stack's 0.9-1.1), mirror it with probability
    1/2 when ``flip``, down-sample it to ``downscale`` x its side and back (resolution
    loss), blur it with a Gaussian of ``blur`` pixels, then resize it to the model's input.
    Natural photos keep their class through such views (tests/test_metrics.py checks one);
    patterns that exist only at the pixel scale the optimizer tuned do not.
    """

    crop: tuple[float, float] = (0.7, 0.9)
    flip: bool = True
    downscale: tuple[float, float] = (0.5, 0.8)
    blur: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        for name in ("crop", "downscale"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ConfigError(f"metrics.view_{name}={[low, high]} must satisfy 0 < low <= high <= 1")
        low, high = self.blur
        if not 0 <= low <= high:
            raise ConfigError(f"metrics.view_blur={[low, high]} must satisfy 0 <= low <= high (pixels; 0 = no blur)")

    def __call__(self, images: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
        """One view of every image in the batch (the same draw for all), ``[B, 3, size, size]``."""
        h, w = images.shape[-2:]
        side = max(2, round(_draw(generator, *self.crop) * min(h, w)))
        y = int(torch.randint(0, h - side + 1, (), generator=generator))
        x = int(torch.randint(0, w - side + 1, (), generator=generator))
        mirror = bool(torch.rand((), generator=generator) < 0.5)
        small = max(2, round(_draw(generator, *self.downscale) * side))
        sigma = _draw(generator, *self.blur)
        v = images[..., y : y + side, x : x + side]
        if self.flip and mirror:
            v = v.flip(-1)
        v = F.interpolate(v, size=(small, small), mode="bilinear", align_corners=False, antialias=True)
        v = F.interpolate(v, size=(side, side), mode="bilinear", align_corners=False)
        if sigma > 0 and side > 2 * math.ceil(3 * sigma):
            v = gaussian_blur(v, sigma)
        return F.interpolate(v, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size).clamp(0, 1)


@torch.no_grad()
def view_metrics(
    model: FeatureModel,
    objective: Objective,
    images: torch.Tensor,
    views: UnseenViews,
    n_views: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """``robust/objective`` (and ``robust/top1|top5|prob`` for class objectives), averaged over views."""
    targets = class_targets(objective, images.shape[0])
    has_class = any(t is not None for t in targets)
    layers = set(objective.layers) | ({LOGITS} if has_class else set())
    totals: dict[str, float] = {}
    for _ in range(n_views):
        acts = model(views(images, generator, model.input_size), layers)
        scores = {"objective": float(objective(acts).mean())}
        if has_class:
            scores.update(class_scores(acts[LOGITS], targets))
        for k, v in scores.items():
            totals[k] = totals.get(k, 0.0) + v
    return {f"robust/{k}": v / n_views for k, v in totals.items()}


# --- everything about one final image --------------------------------------------------


def image_metrics(images: torch.Tensor, hf_cutoff: float = 0.25) -> dict[str, float]:
    """The model-free metrics of a batch of final images, averaged over the batch."""
    return {
        "hf_share": float(high_frequency_share(images, hf_cutoff).mean()),
        "spectral_slope": float(spectral_slope(images).mean()),
        "tv": float(total_variation(images.detach().float()).mean()),
    }


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class MetricsCallback(Callback):
    """Adds the metrics of the final image to ``result.final`` in ``on_end``.

    Place it *before* the writer and the loggers in the callback list: they read
    ``result.final`` in their own ``on_end``.

    Args:
        views: number of unseen random views for ``robust/*`` (0 = leave them out).
        view_seed: seeds the views; the same seed gives every run of a sweep the same views,
            so their ``robust/*`` numbers compare like for like.
        view_transform: how a view is made.
        eval_model: the independent network for ``transfer/*`` (class objectives only).
        hf_cutoff: cut-off of ``hf_share`` in cycles per pixel.
        progress_fraction: the fraction of ``steps_to_<percent>``.
    """

    def __init__(
        self,
        views: int = 16,
        view_seed: int = 0,
        view_transform: UnseenViews | None = None,
        eval_model: FeatureModel | None = None,
        hf_cutoff: float = 0.25,
        progress_fraction: float = 0.9,
    ) -> None:
        if int(views) < 0:
            raise ConfigError(f"metrics.views={views} must be >= 0 (0 leaves out robust/*)")
        _check_cutoff(hf_cutoff)  # now, not after the run
        _check_fraction(progress_fraction)
        self.views = int(views)
        self.view_seed = int(view_seed)
        self.view_transform = view_transform or UnseenViews()
        self.eval_model = eval_model
        self.hf_cutoff = float(hf_cutoff)
        self.progress_fraction = float(progress_fraction)

    def compute(self, ctx: RenderContext, result: RenderResult) -> dict[str, float]:
        images = result.images.to(ctx.device)
        out = {"objective_clean": float(ctx.evaluate(images).mean())}
        out.update(image_metrics(result.images, self.hf_cutoff))
        out[f"steps_to_{round(self.progress_fraction * 100)}"] = steps_to_fraction(result.history, self.progress_fraction)
        if self.views:
            gen = torch.Generator().manual_seed(self.view_seed)
            out.update(view_metrics(ctx.model, ctx.objective, images, self.view_transform, self.views, gen))
        targets = class_targets(ctx.objective, images.shape[0])
        if any(t is not None for t in targets):
            with torch.no_grad():
                clean = ctx.model(_resize(images, ctx.model.input_size), [LOGITS])[LOGITS]
            out.update({f"clean/{k}": v for k, v in class_scores(clean, targets).items()})
            if self.eval_model is not None:
                out.update({f"transfer/{k}": v for k, v in self._transfer(images, targets, ctx.device).items()})
        return out

    def _transfer(self, images: torch.Tensor, targets: list[int | None], device: torch.device) -> dict[str, float]:
        assert self.eval_model is not None
        model = self.eval_model.to(device)
        if model.num_classes is not None and any(t is not None and t >= model.num_classes for t in targets):
            log.warning("eval model %s has %s classes; transfer/* left out for target %s", model.name, model.num_classes, targets)
            return {}
        with torch.no_grad():
            logits = model(_resize(images, model.input_size), [LOGITS])[LOGITS]
        return class_scores(logits, targets)

    def on_end(self, ctx: RenderContext, result: RenderResult) -> None:
        result.final.update(self.compute(ctx, result))


def build_metrics_callback(cfg: Mapping[str, Any], device: str | torch.device = "cpu") -> MetricsCallback | None:
    """Build the callback from the ``metrics:`` config group; None when ``enabled`` is false.

    A missing ``eval_model`` weights file is not an error: the run goes on with a logged
    warning and without ``transfer/*`` (the ``robust/*`` scores on unseen views remain). An
    unknown model name is an error, raised before any optimization.
    """
    cfg = dict(cfg)
    if not cfg.get("enabled", True):
        return None
    views = UnseenViews(
        crop=tuple(cfg.get("view_crop", (0.7, 0.9))),  # type: ignore[arg-type]
        flip=bool(cfg.get("view_flip", True)),
        downscale=tuple(cfg.get("view_downscale", (0.5, 0.8))),  # type: ignore[arg-type]
        blur=tuple(cfg.get("view_blur", (0.5, 1.0))),  # type: ignore[arg-type]
    )
    callback = MetricsCallback(
        views=int(cfg.get("views", 16)),
        view_seed=int(cfg.get("view_seed", 0)),
        view_transform=views,
        hf_cutoff=float(cfg.get("hf_cutoff", 0.25)),
        progress_fraction=float(cfg.get("progress_fraction", 0.9)),
    )
    # The eval model last: the cheap checks above fail before a network is loaded.
    name = cfg.get("eval_model")
    if name not in (None, "", "none", "null"):
        try:
            callback.eval_model = build_model(str(name), weights=cfg.get("eval_weights", "imagenet"), device=device)
        except WeightsError as exc:
            log.warning(
                "metrics.eval_model=%s is unavailable, so transfer/* is left out (robust/* remains): %s "
                "[for the eval model, the weights path goes in metrics.eval_weights; metrics.eval_model=null skips it]",
                name,
                exc,
            )
    return callback
