"""A frozen vision network that returns the activations of named layers.

Every model featviz drives is wrapped in :class:`FeatureModel`, which

* takes RGB images in [0, 1] and applies the network's own input normalization, so
  parameterizations never need to know which network they feed;
* is in eval mode and its weights never require grad (only the image is optimized);
* stops the forward pass right after the deepest layer an objective asks for, by raising
  from a forward hook: the rest of the network is never computed, which is most of the
  cost for early layers.

Layer names are the network's module paths (``blocks.8``, ``inception4a``) plus
``logits``, the network's output.

:meth:`FeatureModel.optimize` applies the speed-ups of :mod:`featviz.models.speedups` and
:mod:`featviz.models.speedups.fusion` (BatchNorm folding, channels-last memory, convolution + activation
fusion, the allocator setting, ``torch.compile``, bf16 autocast) without renaming a layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from featviz.errors import ImageSizeError, UnknownLayerError, closest
from featviz.models.speedups.folding import FoldedPair, fold_batchnorms, unfold
from featviz.models.speedups.fusion import FusedPair, fuse_conv_activations, unfuse
from featviz.models.speedups.memory import keep_freed_memory
from featviz.models.speedups.options import PerfOptions

LOGITS = "logits"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _StopForward(Exception):
    """Raised by a hook once every requested activation has been captured."""


class FeatureModel(nn.Module):
    """Wrap ``net`` so that ``model(images, layers)`` returns ``{layer: activation}``.

    Args:
        net: the classification network; its forward must call its submodules in order.
        mean, std: per-channel input normalization applied to [0, 1] images.
        input_size: the side the network was trained at (the resize transform's target).
        name: a label for logs and errors.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int = 224,
        name: str = "model",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.input_size = int(input_size)
        self.name = name
        self.num_classes = num_classes
        self._modules_by_name = {n: m for n, m in self.net.named_modules() if n}
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
        if options.fold_bn and not self._fold_done:
            self._fold_done = True
            for pair in fold_batchnorms(self.net, self._probe(), keep=keep):
                self.folded[pair.conv] = pair
        if options.channels_last and not self.channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.channels_last = True
        if options.fuse_activations and not self._fuse_done:
            self._fuse_done = True
            for pair in fuse_conv_activations(self.net, self._probe(), keep=keep):
                self.fused[pair.conv] = pair
        self._modules_by_name = {n: m for n, m in self.net.named_modules() if n}
        if options.amp == "bf16":
            self.amp_dtype = torch.bfloat16
        if options.compile and self._compiled is None:
            self._compiled = torch.compile(self.net.forward)
        return self

    def _probe(self) -> torch.Tensor:
        """A fixed random input, normalized and laid out as the network runs it, for checks."""
        generator = torch.Generator().manual_seed(0)
        probe = torch.rand(1, 3, self.input_size, self.input_size, generator=generator).to(self.mean.device)
        probe = self.normalize(probe)
        return probe.contiguous(memory_format=torch.channels_last) if self.channels_last else probe

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

    def forward(self, images: torch.Tensor, layers: Iterable[str] = (LOGITS,)) -> dict[str, torch.Tensor]:
        """Run the network on [0, 1] images and return the requested activations.

        The pass stops as soon as all requested layers have produced output, so asking only
        for an early layer costs only the early part of the network.
        """
        wanted = set(layers)
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

    def layer_shapes(self, size: int | tuple[int, int], layers: Iterable[str] | None = None) -> dict[str, tuple[int, ...]]:
        """Output shape (without batch) of each layer for a ``size`` input, from one probe pass.

        Raises :class:`ImageSizeError` when the input is too small to reach a layer.
        """
        h, w = (size, size) if isinstance(size, int) else size
        names = list(layers) if layers is not None else self.layer_names
        self.check_layers(names)
        device = self.mean.device
        probe = torch.full((1, 3, h, w), 0.5, device=device)
        try:
            with torch.no_grad():
                acts = self(probe, names)
        except RuntimeError as exc:
            raise ImageSizeError(
                f"a {h}x{w} input is too small for model {self.name!r} to reach layer(s) "
                f"{', '.join(names[:3])}: {str(exc).splitlines()[0]}; use a larger param.size "
                f"or keep the resize transform (transforms.resize=true)"
            ) from exc
        shapes = {}
        for name in names:
            act = acts.get(name)
            if act is None or not torch.is_tensor(act):
                continue
            if act.dim() == 4 and min(act.shape[2:]) < 1:
                raise ImageSizeError(f"layer {name!r} has empty output for a {h}x{w} input; use a larger image")
            shapes[name] = tuple(act.shape[1:])
        return shapes
