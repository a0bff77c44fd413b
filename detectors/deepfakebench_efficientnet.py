"""DeepfakeBench's EfficientNet-B4 detector rebuilt on timm, so that its checkpoints load and
score as they do in DeepfakeBench (variant ``deepfakebench_b4`` of ``efficientnet_b4``).

DeepfakeBench builds this detector from ``efficientnet_pytorch`` (lukemelas):
``EfficientNet.from_name("efficientnet-b4")``, the stem swapped for an unpadded
``Conv2d(3, 48, 3, stride=2)``, the ImageNet ``_fc`` removed and ``last_layer = Linear(1792, 2)``
applied to the average-pooled features. The blocks, the SE layers and the TF batch-norm eps
(1e-3) are those of timm's ``tf_efficientnet_b4``; two things are not:

- the stem, which has no padding at all;
- the padding of the stride-2 depthwise convs. lukemelas pads "same" *statically*, for its
  nominal 380 px input, so each stride-2 conv keeps the pads it would need at 380 px whatever
  the real input is. timm's ``tf_`` models compute TF-same pads from the real size, which at
  256 px (127 px after the unpadded stem) differ by a pixel, enough to change the logits.

Stride-1 convs pad symmetrically in both libraries. The checkpoint keys are lukemelas' names
under ``backbone.efficientnet.`` plus ``backbone.last_layer.``; ``deepfakebench_keys`` maps them
to timm's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from torch import nn

NOMINAL_SIZE = 380  # efficientnet_pytorch's image_size for B4: its static pads are computed for it


class FixedPadConv2d(nn.Conv2d):
    """A conv whose input gets a fixed zero padding (left, right, top, bottom) first."""

    def __init__(self, like: nn.Conv2d, pad: tuple[int, int, int, int]):
        super().__init__(like.in_channels, like.out_channels, like.kernel_size, like.stride, 0, like.dilation,
                         like.groups, like.bias is not None)
        self.fixed_pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.fixed_pad))


def static_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding (before, after) of one axis of length ``size``."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def build_deepfakebench_b4(num_classes: int = 2, drop_rate: float = 0.0) -> nn.Module:
    """timm ``tf_efficientnet_b4`` with DeepfakeBench's stem and lukemelas' static pads."""
    net = timm.create_model("tf_efficientnet_b4", pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    net.conv_stem = nn.Conv2d(3, net.conv_stem.out_channels, 3, stride=2, bias=False)
    size = math.ceil(NOMINAL_SIZE / 2)  # the nominal size after lukemelas' (padded) stem
    for stage in net.blocks:
        for block in stage:
            conv = block.conv_dw
            stride = conv.stride[0]
            if stride > 1:
                lo, hi = static_same_pad(size, conv.kernel_size[0], stride)
                block.conv_dw = FixedPadConv2d(conv, (lo, hi, lo, hi))
            size = math.ceil(size / stride)
    return net


# lukemelas names -> timm names inside one block; the first stage's blocks have no expansion conv
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
              "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def deepfakebench_keys(sd: dict[str, torch.Tensor], stage_depths: Sequence[int]) -> dict[str, torch.Tensor]:
    """DeepfakeBench / lukemelas keys -> timm keys; ``stage_depths`` are the blocks per stage
    of the timm model (lukemelas numbers its blocks straight through)."""
    where = [(s, b) for s, depth in enumerate(stage_depths) for b in range(depth)]
    expanded = {int(m.group(1)) for k in sd if (m := _BLOCK_KEY.fullmatch(k.removeprefix("backbone.efficientnet.")))
                and m.group(2) == "_expand_conv"}
    out = {}
    for key, value in sd.items():
        key = key.removeprefix("backbone.")
        if key.startswith("last_layer."):
            out["classifier." + key[len("last_layer."):]] = value
            continue
        key = key.removeprefix("efficientnet.")
        m = _BLOCK_KEY.fullmatch(key)
        if m and int(m.group(1)) < len(where):
            n, module, rest = int(m.group(1)), m.group(2), m.group(3)
            names = _EXPANDED if n in expanded else _SEPARABLE
            s, b = where[n]
            out[f"blocks.{s}.{b}.{names.get(module, module)}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        out[f"{_TOP.get(head, head)}.{rest}"] = value
    return out
