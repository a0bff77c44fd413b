"""A generated, separable stand-in dataset for tests and harness benchmarks.

Real images are smooth random colour fields; fakes are drawn the same way and then carry a
faint periodic (checkerboard) artifact, the kind of up-sampling trace forgery detectors learn.
Deterministic given ``seed``; frames of one "video" share their base field.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.errors import UserError
from bench.registry import register_dataset
from bench.types import Sample


class SyntheticFaces(torch.utils.data.Dataset):
    def __init__(self, n: int = 48, size: int = 64, frames_per_video: int = 4, artifact: float = 0.06,
                 seed: int = 0, split: str = "test"):
        if n < 2:
            raise UserError(f"synthetic dataset needs n >= 2 (one real and one fake at least), got {n!r}")
        self.n, self.size, self.frames, self.artifact = int(n), int(size), int(frames_per_video), artifact
        self.seed = int(seed) + (0 if split == "test" else 1000)

    def __len__(self) -> int:
        return self.n

    def label_of(self, index: int) -> int:
        return index % 2  # alternate real / fake so every prefix is balanced

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        label = self.label_of(index)
        video = index // (2 * self.frames) * 2 + label
        frame = (index // 2) % self.frames
        g = torch.Generator().manual_seed(self.seed * 100_003 + video)
        coarse = torch.rand(1, 3, 4, 4, generator=g)
        img = F.interpolate(coarse, size=(self.size, self.size), mode="bicubic", align_corners=False)[0]
        # a little per-frame jitter so frames of one video differ
        gf = torch.Generator().manual_seed(self.seed * 100_003 + video * 97 + frame)
        img = img + 0.02 * torch.randn(3, 1, 1, generator=gf)
        if label == 1:
            yy, xx = torch.meshgrid(torch.arange(self.size), torch.arange(self.size), indexing="ij")
            img = img + self.artifact * (((yy + xx) % 2).float() * 2 - 1)
        return Sample(id=f"syn{index:05d}", image01=img.clamp(0, 1).float(), label=label,
                      video_id=f"video{video:04d}", frame=frame, meta={})


@register_dataset("synthetic", accepts=(SyntheticFaces,))
def synthetic(**kwargs) -> SyntheticFaces:
    """Generated smooth colour fields; fakes carry a faint checkerboard artifact."""
    return SyntheticFaces(**kwargs)
