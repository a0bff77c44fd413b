"""The latent stack the eraser and the inversion control share: an e4e-style encoder, a
StyleGAN2 generator and ``latent_avg``, with [0,1] image conversions at the boundaries.

``invert(x01) -> w0 = E(x) + latent_avg`` (x resized to the encoder's input size, in [-1,1]);
``render01(w, noise, generator, size) -> G(w)`` mapped to [0,1] and resized to ``size`` (an
exact box average when the factor is an integer, as the official 1024 -> 256 pooling).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bench.errors import UserError
from bench.models.e4e import Encoder4Editing
from bench.models.stylegan2 import Generator, NoiseMode
from bench.types import resize_to


class LatentStack(nn.Module):
    def __init__(self, encoder: nn.Module, generator: Generator, latent_avg: torch.Tensor | None = None,
                 encoder_input_size: int | None = None):
        super().__init__()
        self.encoder = encoder.eval()
        self.generator = generator.eval()
        n, d = generator.n_latent, generator.style_dim
        if latent_avg is None:
            latent_avg = generator.mean_latent(10_000, torch.Generator().manual_seed(0))
        la = latent_avg.detach().float()
        la = la.reshape(-1, la.shape[-1])
        if la.shape[0] == 1:
            la = la.expand(n, -1)
        if tuple(la.shape) != (n, d):
            raise UserError(f"latent_avg has shape {tuple(latent_avg.shape)}; the generator needs ({n}, {d}) or ({d},)")
        self.register_buffer("latent_avg", la.clone())
        self.encoder_input_size = int(encoder_input_size or getattr(encoder, "input_size", 256))
        # parameters keep their requires_grad: the walk asks autograd for d/dw only, and callers
        # may still be training these modules

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    def invert(self, x01: torch.Tensor) -> torch.Tensor:
        """x01 (B,3,H,W) in [0,1] -> W+ codes (B, n_latent, style_dim) = E(x) + latent_avg."""
        x = x01
        if x.shape[-2:] != (self.encoder_input_size, self.encoder_input_size):
            x = resize_to(x, self.encoder_input_size)
        codes = self.encoder(x * 2 - 1)
        return codes.float() + self.latent_avg

    def render01(self, w: torch.Tensor, noise: NoiseMode | Sequence[torch.Tensor] = "random",
                 generator: torch.Generator | None = None, size: int | None = None) -> torch.Tensor:
        """G(w) mapped from [-1,1] to [0,1] (not clamped) and resized to ``size``."""
        img = self.generator.synthesize(w, noise=noise, generator=generator)
        img = (img.float() + 1) / 2
        if size is not None and img.shape[-1] != size:
            img = resize_to(img, size)
        return img


def build_latent_stack(checkpoint: str | None = None, encoder: nn.Module | None = None,
                       generator: Generator | None = None, latent_avg: torch.Tensor | None = None,
                       encoder_checkpoint: str | None = None, generator_checkpoint: str | None = None,
                       encoder_input_size: int | None = None, trust_checkpoint: bool = False,
                       **_: Any) -> LatentStack:
    """Where the models come from, in order of precedence for each part:
    in-memory ``encoder=``/``generator=``/``latent_avg=``; ``encoder_checkpoint`` (an e4e .pt,
    its encoder and latent_avg) and ``generator_checkpoint`` (a rosinality .pt); ``checkpoint``
    (one e4e .pt holding both)."""
    from bench.models import checkpoints as ck

    if checkpoint:
        e4e = ck.read_e4e(checkpoint, trust_checkpoint)
        encoder = encoder or e4e.encoder
        generator = generator or e4e.generator
        latent_avg = latent_avg if latent_avg is not None else e4e.latent_avg
    if encoder_checkpoint and encoder is None:
        e4e = ck.read_e4e(encoder_checkpoint, trust_checkpoint)
        encoder = e4e.encoder
        latent_avg = latent_avg if latent_avg is not None else e4e.latent_avg
    if generator_checkpoint and generator is None:
        ros = ck.read_rosinality(generator_checkpoint, trust_checkpoint=trust_checkpoint)
        generator = ros.generator
        latent_avg = latent_avg if latent_avg is not None else ros.latent_avg
    if encoder is None or generator is None:
        raise UserError("the latent attack needs an encoder and a generator: pass checkpoint=E4E.pt, or "
                        "encoder_checkpoint= and generator_checkpoint=, or in-memory encoder=/generator=")
    if isinstance(encoder, Encoder4Editing) and encoder.n_styles != generator.n_latent:
        raise UserError(f"encoder predicts {encoder.n_styles} W+ rows but the generator has {generator.n_latent}; "
                        "they come from different model sizes")
    return LatentStack(encoder, generator, latent_avg, encoder_input_size)
