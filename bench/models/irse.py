"""IR-SE ResNet blocks (ArcFace's "improved residual" units with squeeze-excitation) and the
IR-SE50 face-ID backbone of pSp/e4e (``model_ir_se50.pth``).

Written from the ArcFace/InsightFace architecture description and the published state-dict
layout. The module names (``input_layer``, ``body.<i>.shortcut_layer`` / ``res_layer``,
``output_layer``) are those of the checkpoints, so the weights load strictly. ``widths`` and
``units`` are extra options for small demo models; the defaults are the official ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
WIDTHS = (64, 128, 256, 512)


def stage_units(num_layers: int, units: Sequence[int] | None = None) -> tuple[int, ...]:
    if units is not None:
        return tuple(int(u) for u in units)
    if num_layers not in UNITS:
        raise ValueError(f"num_layers must be one of {sorted(UNITS)} (or pass units=...), got {num_layers}")
    return UNITS[num_layers]


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, max(channels // reduction, 1), 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(max(channels // reduction, 1), channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """BN -> conv3x3 -> PReLU -> conv3x3 (strided) -> BN [-> SE], plus a (projected) shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = True):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def input_layer(width: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


def ir_body(units: Sequence[int], widths: Sequence[int] = WIDTHS, mode: str = "ir_se") -> nn.Sequential:
    """Four stages; each starts with a stride-2 unit. The first stage's input width is widths[0]."""
    if mode not in ("ir", "ir_se"):
        raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
    blocks: list[nn.Module] = []
    in_ch = widths[0]
    for n, depth in zip(units, widths):
        for j in range(n):
            blocks.append(BottleneckIR(in_ch, depth, 2 if j == 0 else 1, se=mode == "ir_se"))
            in_ch = depth
    return nn.Sequential(*blocks)


class Backbone(nn.Module):
    """IR-SE face-ID backbone: ``forward(x in [-1,1], 112x112) -> L2-normalised (N, 512)``."""

    def __init__(self, input_size: int = 112, num_layers: int = 50, mode: str = "ir_se",
                 drop_ratio: float = 0.6, affine: bool = True, units: Sequence[int] | None = None,
                 widths: Sequence[int] = WIDTHS, embedding_dim: int = 512):
        super().__init__()
        if input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {input_size}")
        self.input_size = input_size
        self.input_layer = input_layer(widths[0])
        grid = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(widths[-1]), nn.Dropout(drop_ratio), nn.Flatten(),
            nn.Linear(widths[-1] * grid * grid, embedding_dim), nn.BatchNorm1d(embedding_dim, affine=affine))
        self.body = ir_body(stage_units(num_layers, units), widths, mode)

    def embed_prenorm(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed_prenorm(x), dim=1)
