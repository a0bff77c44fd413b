"""The EfficientNet inside the official MAT code: efficientnet_pytorch 0.6.3 as vendored by
yoctta/multiple-attention, rebuilt here with the same module names, so that a MAT checkpoint's
``net.*`` keys load as they are.

Two facts of that copy matter for the numbers, beyond the usual EfficientNet (TF batch-norm eps
1e-3, swish, squeeze-excitation with biases):

- **Static padding.** Every conv pads TF-"same" *as if the input were the nominal image size*
  (380 px for B4): the pads are computed once per conv from that size and its kernel/stride, and
  reused whatever size reaches the layer. Stride-2 3x3 convs pad (0, 1), stride-2 5x5 convs
  (1, 2), stride-1 convs symmetrically. At 256 px this equals TF-same; at 380 px the stride-2
  convs meet the odd sizes 95, 47 and 23 and the sizes run 380 -> 190 -> 95 -> 47 -> 23 -> 11
  (TF-same from the real size would give 48, 24, 12 and other logits).
- **Named stage outputs.** MAT reads ``b<n>`` = the output of the last block of stage n
  (B4: b2 = 32 ch at 1/4 scale, b5 = 160 ch at 1/16) and ``final`` = swish(bn1(conv_head)).

``width`` / ``depth`` are efficientnet_pytorch's width and depth coefficients (B4: 1.4 / 1.8);
smaller values give the reduced demo models through the same code.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from detectors.deepfakebench_efficientnet import static_same_pad

BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's eps, and PyTorch's momentum for TF's decay 0.99
SE_RATIO = 0.25
B4_WIDTH, B4_DEPTH, B4_IMAGE_SIZE = 1.4, 1.8, 380


class Stage(NamedTuple):
    """One row of EfficientNet-B0's block table, before width/depth scaling."""

    kernel: int
    repeats: int
    c_in: int
    c_out: int
    expand: int
    stride: int


B0_STAGES = (Stage(3, 1, 32, 16, 1, 1), Stage(3, 2, 16, 24, 6, 2), Stage(5, 2, 24, 40, 6, 2),
             Stage(3, 3, 40, 80, 6, 2), Stage(5, 3, 80, 112, 6, 1), Stage(5, 4, 112, 192, 6, 2),
             Stage(3, 1, 192, 320, 6, 1))


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count and round it to a multiple of 8, never by more than 10 % down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


class StaticSameConv2d(nn.Conv2d):
    """A conv preceded by the zero padding TF-"same" would use at the nominal input size."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = True, image_size: int = B4_IMAGE_SIZE):
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=bias)
        lo, hi = static_same_pad(image_size, kernel, stride)
        self.same_pad = (lo, hi, lo, hi)  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.same_pad) if any(self.same_pad) else x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: [1x1 expand] -> depthwise -> squeeze-excite -> 1x1 project."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, image_size: int):
        super().__init__()
        mid = c_in * expand
        self.expands = expand != 1
        self.skip = stride == 1 and c_in == c_out
        if self.expands:
            self._expand_conv = StaticSameConv2d(c_in, mid, 1, bias=False, image_size=image_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = StaticSameConv2d(mid, mid, kernel, stride, groups=mid, bias=False,
                                                image_size=image_size)
        self._bn1 = _bn(mid)
        squeezed = max(1, int(c_in * SE_RATIO))
        self._se_reduce = StaticSameConv2d(mid, squeezed, 1, image_size=image_size)
        self._se_expand = StaticSameConv2d(squeezed, mid, 1, image_size=image_size)
        self._project_conv = StaticSameConv2d(mid, c_out, 1, bias=False, image_size=image_size)
        self._bn2 = _bn(c_out)

    def forward(self, inputs: torch.Tensor, drop_connect: float = 0.0) -> torch.Tensor:
        x = F.silu(self._bn0(self._expand_conv(inputs))) if self.expands else inputs
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        squeezed = self._se_expand(F.silu(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        x = self._bn2(self._project_conv(torch.sigmoid(squeezed) * x))
        if not self.skip:
            return x
        if drop_connect and self.training:  # stochastic depth: drop the whole branch per sample
            keep = 1.0 - drop_connect
            x = x * torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)) / keep
        return x + inputs


class StaticPadEfficientNet(nn.Module):
    """EfficientNet with efficientnet_pytorch's module names (``_conv_stem``, ``_bn0``,
    ``_blocks.<n>``, ``_conv_head``, ``_bn1``, ``_fc``); ``forward`` returns the named stage
    outputs ``b1``..``b7`` and ``final``. ``_fc`` is the ImageNet/2-way head the official
    checkpoints carry; MAT never runs it."""

    def __init__(self, width: float = B4_WIDTH, depth: float = B4_DEPTH, image_size: int = B4_IMAGE_SIZE,
                 num_classes: int = 2, drop_connect_rate: float = 0.0):
        super().__init__()
        self.drop_connect_rate = float(drop_connect_rate)
        stem = round_filters(32, width)
        self._conv_stem = StaticSameConv2d(3, stem, 3, 2, bias=False, image_size=image_size)
        self._bn0 = _bn(stem)
        self._blocks = nn.ModuleList()
        self.stage_ends: dict[int, str] = {}  # block index -> name of the stage it closes
        c_out = stem
        for number, stage in enumerate(B0_STAGES, start=1):
            c_in, c_out = round_filters(stage.c_in, width), round_filters(stage.c_out, width)
            for i in range(round_repeats(stage.repeats, depth)):
                self._blocks.append(MBConvBlock(c_in if i == 0 else c_out, c_out, stage.kernel,
                                                stage.stride if i == 0 else 1, stage.expand, image_size))
            self.stage_ends[len(self._blocks) - 1] = f"b{number}"
        head = round_filters(1280, width)
        self._conv_head = StaticSameConv2d(c_out, head, 1, bias=False, image_size=image_size)
        self._bn1 = _bn(head)
        self._fc = nn.Linear(head, num_classes)
        self.stage_channels = {name: self._blocks[i]._bn2.num_features for i, name in self.stage_ends.items()}
        self.num_features = head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        layers = {}
        x = F.silu(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            x = block(x, self.drop_connect_rate * index / len(self._blocks))
            if index in self.stage_ends:
                layers[self.stage_ends[index]] = x
        layers["final"] = F.silu(self._bn1(self._conv_head(x)))
        return layers
