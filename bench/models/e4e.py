"""The e4e encoder (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation"):
an IR-SE50 trunk with a three-level feature pyramid and one map-to-style block per W+ row.

``forward(x in [-1,1]) -> codes (N, n_styles, style_dim)``: row 0 is the base code ``w0``
predicted from the coarsest features, every other row is ``w0 + delta_i`` (e4e's progressive
deltas, all enabled as at inference). ``latent_avg`` is NOT added here; the caller adds it.
State-dict keys match the official ``Encoder4Editing``. ``input_size``, ``units``, ``widths``
and ``style_dim`` shrink the model for the offline demo; defaults give the official encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.irse import WIDTHS, input_layer, ir_body, stage_units
from bench.models.stylegan2 import EqualLinear

COARSE_END, MIDDLE_END = 3, 7  # rows 0-2 read c3, rows 3-6 the middle FPN level, the rest the fine one


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 convs with LeakyReLU(0.01) down to 1x1, then an EqualLinear."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        n = int(math.log2(spatial))
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(n - 1):
            layers += [nn.Conv2d(out_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN merge: bilinear (align_corners=True) upsampling of x to y's size, plus y."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18, input_size: int = 256,
                 style_dim: int = 512, units: Sequence[int] | None = None, widths: Sequence[int] = WIDTHS):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"encoder input_size must be a multiple of 16, got {input_size}")
        units = stage_units(num_layers, units)
        widths = tuple(int(c) for c in widths)
        self.n_styles, self.input_size, self.style_dim = n_styles, input_size, style_dim
        self.config = {"num_layers": num_layers, "mode": mode, "n_styles": n_styles, "input_size": input_size,
                           "style_dim": style_dim, "units": list(units), "widths": list(widths)}
        self.input_layer = input_layer(widths[0])
        self.body = ir_body(units, widths, mode)
        ends = [sum(units[: k + 1]) - 1 for k in range(4)]
        self.c1_index, self.c2_index, self.c3_index = ends[1], ends[2], ends[3]  # 6, 20, 23 for IR-SE50
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            # c3 is input/16, the middle FPN level input/8, the fine level input/4
            spatial = input_size // (16 if i < COARSE_END else 8 if i < MIDDLE_END else 4)
            self.styles.append(GradualStyleBlock(widths[3], style_dim, spatial))
        self.latlayer1 = nn.Conv2d(widths[2], widths[3], 1)
        self.latlayer2 = nn.Conv2d(widths[1], widths[3], 1)

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c1, c2, c3): outputs of the last unit of stages 2, 3 and 4."""
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in (self.c1_index, self.c2_index, self.c3_index):
                feats[i] = x
        return feats[self.c1_index], feats[self.c2_index], feats[self.c3_index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.pyramid(x)
        w0 = self.styles[0](c3)
        rows = [w0]
        features = c3
        p2 = c3
        for i in range(1, self.n_styles):
            if i == COARSE_END:
                p2 = upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_END:
                features = upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        return torch.stack(rows, dim=1)
