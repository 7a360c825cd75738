"""A frozen vision network that returns the activations of named layers.

Every model featviz drives is wrapped in :class:`FeatureModel`, which

* takes images in [0, 1] with as many channels as the network's first layer reads (3 for
  RGB, 1 for grayscale, more for multispectral) and applies the network's own input
  normalization, so parameterizations never need to know which network they feed;
* is in eval mode and its weights never require grad (only the image is optimized);
* stops the forward pass right after the deepest layer an objective asks for, by raising
  from a forward hook: the rest of the network is never computed, which is most of the
  cost for early layers.

Layer names are the network's module paths (``blocks.8``, ``inception4a``) plus
``logits``, the network's output. Each layer's :class:`~featviz.models.layout.Layout` (NCHW,
NHWC, tokens, vector) is found from the shapes it gives and travels with its activations.

:meth:`FeatureModel.optimize` applies the speed-ups of :mod:`featviz.models.speedups` and
:mod:`featviz.models.speedups.fusion` (BatchNorm folding, channels-last memory, convolution + activation
fusion, the allocator setting, ``torch.compile``, bf16 autocast) without renaming a layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from featviz.errors import ConfigError, ImageSizeError, UnknownLayerError, closest
from featviz.models.layout import Layout, LayerMap, infer, resolve
from featviz.models.speedups.folding import FoldedPair, fold_batchnorms, unfold
from featviz.models.speedups.fusion import FusedPair, fuse_conv_activations, unfuse
from featviz.models.speedups.memory import keep_freed_memory
from featviz.models.speedups.options import PerfOptions

LOGITS = "logits"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A second probe side, this much larger, tells a layer's channel axis from its spatial ones.
_SECOND_PROBE_STEP = 32
#: Folding and fusion find their chains and check their result on a probe of this side when
#: the network takes one: neither depends on the side, and at 224 px the probe passes were
#: ~0.9 s of every process's start-up (docs/performance.md).
CHECK_SIDE = 64


class _StopForward(Exception):
    """Raised by a hook once every requested activation has been captured."""


class FeatureModel(nn.Module):
    """Wrap ``net`` so that ``model(images, layers)`` returns ``{layer: activation}``.

    Args:
        net: the classification network; its forward must call its submodules in order.
        mean, std: per-channel input normalization applied to [0, 1] images (one value
            serves every channel).
        input_size: the side the network was trained at (the resize transform's target).
        name: a label for logs and errors.
        in_channels: channels of the network's input; None reads them from its first
            module with ``in_channels`` (the stem convolution), else 3.
        token_prefix: tokens before the patch grid in every token layer, when the network
            says (timm's ``num_prefix_tokens``: class, distillation, register tokens); None
            finds it from each layer's shape, which a small grid can leave ambiguous.

    ``text_encoder`` is set by the CLIP builders: ``prompts -> [P, D]`` unit text embeddings
    in the space of the image embedding, computed by a text tower that is built, run and
    freed on each call (the model never holds it).
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int = 224,
        name: str = "model",
        num_classes: int | None = None,
        in_channels: int | None = None,
        token_prefix: int | None = None,
    ) -> None:
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.in_channels = int(in_channels or stem_channels(net) or 3)
        self.register_buffer("mean", _per_channel(mean, self.in_channels, "model.mean"))
        self.register_buffer("std", _per_channel(std, self.in_channels, "model.std"))
        self.input_size = int(input_size)
        self.name = name
        self.num_classes = num_classes
        self._modules_by_name = {n: m for n, m in self.net.named_modules() if n}
        self._layouts: dict[str, Layout] = {}
        self.token_prefix = token_prefix
        self.text_encoder: Callable[[Sequence[str]], torch.Tensor] | None = None
        # Set by optimize(): convolutions that now return their folded BatchNorm's output.
        self.folded: dict[str, FoldedPair] = {}
        self._fold_done = False
        # Set by optimize(): convolutions that now also apply the activation after them.
        self.fused: dict[str, FusedPair] = {}
        self._fuse_done = False
        self.channels_last = False
        self.amp_dtype: torch.dtype | None = None
        # A compiled bound method, not a module, so the network is not registered twice.
        self._compiled: Callable[[torch.Tensor], Any] | None = None

    # nn.Module.train() would switch BatchNorm/Dropout back on; a visualized model stays frozen.
    def train(self, mode: bool = True) -> FeatureModel:  # noqa: ARG002 - signature of nn.Module
        return super().train(False)

    @property
    def layer_names(self) -> list[str]:
        """All hookable layer names, in definition order, then ``logits``."""
        return [*self._modules_by_name, LOGITS]

    def check_layers(self, layers: Iterable[str]) -> None:
        """Raise :class:`UnknownLayerError` naming the closest layers for any unknown name."""
        for layer in layers:
            if layer != LOGITS and layer not in self._modules_by_name:
                hint = ", ".join(closest(layer, self.layer_names)) or "run `featviz layers`"
                raise UnknownLayerError(
                    f"model {self.name!r} has no layer {layer!r}; closest: {hint} "
                    f"(`python -m featviz layers model=...` lists them all)"
                )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def optimize(self, options: PerfOptions | None = None, keep: Iterable[str] = ()) -> FeatureModel:
        """Apply the speed-ups in ``options`` in place and return ``self``.

        Args:
            options: which speed-ups; the default folds BatchNorms, uses channels-last and
                fuses convolutions with their activations.
            keep: layers whose outputs must stay exactly what they were (the objective's
                layers): a convolution named here keeps (or gets back) its BatchNorm and
                its separate activation, so one model can serve many objectives. A folded
                or fused convolution asked for later by :meth:`forward` is given back its
                BatchNorm and activation there and then.

        Layer names and the values of every non-folded layer are unchanged (up to float
        rounding, and bf16 rounding with ``amp="bf16"``). Options switch speed-ups on; one
        left off does not undo an earlier call's. Folding happens once (it costs probe
        passes); later calls only give back the pairs that ``keep`` names, so building many
        runs on one model (a sweep, the units mode) stays cheap.
        """
        options = options or PerfOptions()
        if options.keep_freed_memory:
            keep_freed_memory()
        keep = set(keep)
        self._unfold(keep)
        checks = (options.fold_bn and not self._fold_done) or (options.fuse_activations and not self._fuse_done)
        side = self._check_side() if checks else self.input_size
        if options.fold_bn and not self._fold_done:
            self._fold_done = True
            for pair in fold_batchnorms(self.net, self._probe(side), keep=keep):
                self.folded[pair.conv] = pair
        if options.channels_last and not self.channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.channels_last = True
        if options.fuse_activations and not self._fuse_done:
            self._fuse_done = True
            for pair in fuse_conv_activations(self.net, self._probe(side), keep=keep):
                self.fused[pair.conv] = pair
        self._modules_by_name = {n: m for n, m in self.net.named_modules() if n}
        if options.amp == "bf16":
            self.amp_dtype = torch.bfloat16
        if options.compile and self._compiled is None:
            self._compiled = torch.compile(self.net.forward)
        return self

    def _probe(self, side: int) -> torch.Tensor:
        """A fixed random input of ``side`` px, normalized and laid out as the network runs it, for checks."""
        generator = torch.Generator().manual_seed(0)
        probe = torch.rand(1, self.in_channels, side, side, generator=generator).to(self.mean.device)
        probe = self.normalize(probe)
        return probe.contiguous(memory_format=torch.channels_last) if self.channels_last else probe

    def _check_side(self) -> int:
        """:data:`CHECK_SIDE`, or the input size for a network that refuses a smaller input
        (a ViT's fixed patch grid, a flatten into a fixed-size linear layer)."""
        if self.input_size <= CHECK_SIDE:
            return self.input_size
        try:
            with torch.no_grad():
                self.net(self._probe(CHECK_SIDE))
        except (RuntimeError, AssertionError, ValueError):
            return self.input_size
        return CHECK_SIDE

    def _unfold(self, layers: set[str]) -> None:
        """Give the folded convolutions among ``layers`` their BatchNorms back, and unfuse any
        convolution whose own output (or a pass-through of it) is among ``layers``."""
        separate = [pair for pair in self.fused.values() if pair.names & layers]
        for pair in separate:
            del self.fused[pair.conv]
        unfuse(self.net, separate)
        restore = [self.folded.pop(name) for name in layers & self.folded.keys()]
        if not restore:
            if separate:
                self._modules_by_name = {n: m for n, m in self.net.named_modules() if n}
            return
        unfold(self.net, restore)
        if self.channels_last:
            for pair in restore:
                pair.original_conv.to(memory_format=torch.channels_last)
        self._modules_by_name = {n: m for n, m in self.net.named_modules() if n}

    def forward(self, images: torch.Tensor, layers: Iterable[str] = (LOGITS,)) -> LayerMap[torch.Tensor]:
        """Run the network on [0, 1] images and return the requested activations.

        The pass stops as soon as all requested layers have produced output, so asking only
        for an early layer costs only the early part of the network. The activations are as
        the layers gave them (Swin's stay ``[B, H, W, C]``); the returned mapping's
        ``layouts`` says how to read each (:func:`featviz.models.layout.grid_of`).
        """
        wanted = set(layers)
        captured = self._capture(images, wanted)
        never = sorted(wanted - captured.keys())
        if never:
            raise UnknownLayerError(
                f"layer(s) {', '.join(never)} of model {self.name!r} never ran in the forward pass (a module whose weights "
                f"its parent uses directly, like MultiheadAttention.out_proj); hook the parent module instead"
            )
        return LayerMap(captured, self.layouts_of(captured, tuple(images.shape[-2:])))

    def _capture(self, images: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        """The hooked pass: ``{layer: output}`` for the layers of ``wanted`` that ran."""
        self.check_layers(wanted)
        # A folded convolution would return its BatchNorm's output: unfold it first, so a
        # model optimized for one objective still answers any other exactly.
        self._unfold(wanted)
        captured: dict[str, torch.Tensor] = {}
        hooked = wanted - {LOGITS}
        handles = []

        def make_hook(layer: str):
            def hook(_module: nn.Module, _inputs: object, output: object) -> None:
                # A module called twice (shared) keeps its first output, like a tap would.
                if layer not in captured:
                    captured[layer] = output[0] if isinstance(output, tuple) else output
                if LOGITS not in wanted and len(captured) == len(hooked):
                    raise _StopForward

            return hook

        for layer in hooked:
            handles.append(self._modules_by_name[layer].register_forward_hook(make_hook(layer)))
        x = self.normalize(images)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
                out = (self._compiled or self.net)(x)
            if LOGITS in wanted:
                captured[LOGITS] = out.logits if hasattr(out, "logits") else out
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        if self.amp_dtype is not None:
            # Objectives and their gradients stay in float32 whatever the network ran in.
            captured = {k: v.float() if torch.is_tensor(v) else v for k, v in captured.items()}
        return captured

    def layouts_of(self, acts: dict[str, torch.Tensor], input_hw: tuple[int, int]) -> dict[str, Layout]:
        """The layout of each activation in ``acts`` (found once per layer, then remembered).

        Most layers tell from their shape at a square input (:func:`~featviz.models.layout.infer`);
        the rest (channels = height = width) from two probe passes at different sizes.
        """
        unsure = []
        for name, act in acts.items():
            if name in self._layouts or not torch.is_tensor(act):
                continue
            found = infer(tuple(act.shape[1:]), input_hw)
            if found is not None and found.kind == "tokens" and self.token_prefix is not None:
                found = Layout("tokens", self.token_prefix) if _square(act.shape[1] - self.token_prefix) else found
            if found is None:
                unsure.append(name)
            else:
                self._layouts[name] = found
        if unsure:
            first, second = (self._probe_shapes(self.input_size + step, unsure) for step in (0, _SECOND_PROBE_STEP))
            for name in unsure:
                self._layouts[name] = resolve(first[name], second.get(name)) if name in first else Layout("nchw")
        return {name: self._layouts[name] for name in acts if name in self._layouts}

    def _probe_shapes(self, side: int, layers: list[str]) -> dict[str, tuple[int, ...]]:
        """Raw output shapes (without batch) at a ``side`` px grey input; {} if the network refuses it."""
        probe = torch.full((1, self.in_channels, side, side), 0.5, device=self.mean.device)
        try:
            with torch.no_grad():
                acts = self._capture(probe, set(layers))
        except (RuntimeError, AssertionError, ValueError):
            return {}
        return {k: tuple(v.shape[1:]) for k, v in acts.items() if torch.is_tensor(v)}

    def layer_shapes(self, size: int | tuple[int, int], layers: Iterable[str] | None = None) -> LayerMap[tuple[int, ...]]:
        """``(C, H, W)`` of each layer (``(C,)`` for vectors) for a ``size`` input, from one probe pass.

        Channels come first whatever the layer's layout (a ViT layer's H x W is its patch
        grid); the returned mapping's ``layouts`` holds each layer's layout. Layers that
        never run in the forward pass are left out. Raises :class:`ImageSizeError` when the
        input is too small to reach a layer (or is not the one size a ViT takes).
        """
        h, w = (size, size) if isinstance(size, int) else size
        names = list(layers) if layers is not None else self.layer_names
        self.check_layers(names)
        probe = torch.full((1, self.in_channels, h, w), 0.5, device=self.mean.device)
        try:
            with torch.no_grad():
                acts = self._capture(probe, set(names))
        except (RuntimeError, AssertionError, ValueError) as exc:
            raise ImageSizeError(
                f"a {h}x{w} input does not fit model {self.name!r} up to layer(s) "
                f"{', '.join(names[:3])}: {str(exc).splitlines()[0]}; use a larger param.size "
                f"or keep the resize transform (transforms.resize=true), which feeds the model its own {self.input_size} px"
            ) from exc
        acts = {name: acts[name] for name in names if torch.is_tensor(acts.get(name))}
        layouts = self.layouts_of(acts, (h, w))
        shapes = {}
        for name, act in acts.items():
            chw = layouts[name].chw(tuple(act.shape[1:]))
            if len(chw) == 3 and min(chw[1:]) < 1:
                raise ImageSizeError(f"layer {name!r} has empty output for a {h}x{w} input; use a larger image")
            shapes[name] = chw
        return LayerMap(shapes, layouts)


def _square(n: int) -> bool:
    """Whether ``n`` patches fill a square grid (a token layer with the network's prefix)."""
    return n > 0 and math.isqrt(n) ** 2 == n


def stem_channels(net: nn.Module) -> int | None:
    """Input channels of ``net``'s first module that declares them (its stem convolution)."""
    for module in net.modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int) and channels > 0:
            return channels
    return None


def _per_channel(values: Sequence[float], channels: int, key: str) -> torch.Tensor:
    """``values`` as a ``[1, channels, 1, 1]`` buffer; one value serves every channel."""
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ConfigError(f"{key} has {t.numel()} values but the network takes {channels} input channel(s); give one value or {channels}")
    return t.reshape(1, channels, 1, 1).clone()
