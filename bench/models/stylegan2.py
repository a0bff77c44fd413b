"""StyleGAN2 generator (config-f) in pure PyTorch, state-dict compatible with rosinality's
``model.Generator`` (and e4e's copy of it) at every size and channel multiplier.

Written from the StyleGAN2 paper (Karras et al. 2020) and the published checkpoint layout
(``/work/shared/reference/layouts``). Extra constructor options (``channel_max``) shrink the
network for the offline demo; their defaults give the official architecture.

Latent convention: ``w`` of shape (N, style_dim) is broadcast to all ``n_latent`` rows; W+ is
(N, n_latent, style_dim). Row i drives: 0 the 4x4 conv, 1 the 4x4 toRGB; then for each
resolution r = 8, 16, ...: rows 2k and 2k+1 its two convs and row 2k+2 its toRGB, where the
toRGB row is shared with the next resolution's upsampling conv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.fir import SQRT2, Blur, FusedLeakyReLU, Upsample, fused_leaky_relu

NoiseMode = Literal["random", "const"]


def official_channels(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature maps per resolution (rosinality/config-f), optionally capped at ``channel_max``."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier,
            128: 128 * channel_multiplier, 256: 64 * channel_multiplier,
            512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {r: min(c, channel_max) for r, c in base.items()}


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: the stored weight is scaled at run time by
    ``lr_mul / sqrt(in_dim)`` and the bias by ``lr_mul``; optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, 0.2) * math.sqrt(2)
        return F.linear(x, self.weight * self.scale, bias)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) conv, run as one grouped conv per batch."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), fused: bool = False):
        super().__init__()
        self.fused = fused  # grouped-conv form (rosinality's default); False = batched form
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:  # blur after the stride-2 transposed conv; registered before weight's siblings
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        if not self.fused:
            return self._forward_unfused(x, style, gain)
        b, cin, h, w = x.shape
        k, cout = self.kernel_size, self.out_channel
        s = self.modulation(style).view(b, 1, cin, 1, 1)
        weight = self.scale * self.weight * s  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(b, cout, 1, 1, 1)
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * cin, cout, k, k)
            out = F.conv_transpose2d(x, weight.to(x.dtype), padding=0, stride=2, groups=b)
            out = out.view(b, cout, out.shape[-2], out.shape[-1])
            return self.blur(out)
        out = F.conv2d(x, weight.reshape(b * cout, cin, k, k).to(x.dtype), padding=self.padding, groups=b)
        return out.view(b, cout, out.shape[-2], out.shape[-1])

    def _forward_unfused(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """Same math with shared weights: scale the input channels by the style, run one plain
        (batched) conv, then scale the output channels by the demodulation factor (times
        ``gain``, which lets the caller fold a following constant gain into this small vector).
        Runs channels_last: oneDNN's 3x3, transposed and depthwise (blur) convs are 1.2-1.9x
        faster in that layout at 128-256 px on CPU, and it is the tensor-core layout on CUDA.
        Much faster than the per-sample grouped conv on CPU; equal up to float rounding."""
        s = self.modulation(style)  # (B, in)
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        x = x.contiguous(memory_format=torch.channels_last) * s[:, :, None, None].to(x.dtype)
        if self.upsample:
            weight = weight.transpose(0, 1).to(x.dtype).contiguous(memory_format=torch.channels_last)
            out = self.blur(F.conv_transpose2d(x, weight, padding=0, stride=2))
        else:
            weight = weight.to(x.dtype).contiguous(memory_format=torch.channels_last)
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum over (in, k, k) of (w * s)^2 = (s^2) @ (sum_kk w^2)^T
            demod = torch.rsqrt((s * s) @ self.weight[0].pow(2).sum([2, 3]).t() * self.scale ** 2 + 1e-8)  # (B, out)
            out = out * (demod * gain)[:, :, None, None].to(out.dtype)
        elif gain != 1.0:
            out = out * gain
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return image + self.weight * noise.to(image.dtype)


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.conv.fused:  # the official op order
            return self.activate(self.noise(self.conv(x, style), noise))
        # Batched form: leaky ReLU is positively homogeneous, so its sqrt(2) output gain moves into
        # the demodulation vector, the noise weight and the bias (all small), and the bias and
        # noise adds run in place on the fresh conv output: two fewer full-size passes forward
        # and backward, and fewer large allocations, for the same value up to rounding.
        out = self.conv(x, style, gain=SQRT2)
        out = out.add_(noise.to(out.dtype) * (SQRT2 * self.noise.weight).to(out.dtype))
        out = out.add_((SQRT2 * self.activate.bias).view(1, -1, 1, 1).to(out.dtype))
        return F.leaky_relu(out, 0.2, inplace=True)


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """StyleGAN2 generator. ``mapping(z) -> w``; ``synthesize(w, noise) -> image in [-1,1]``
    (nominally; the output is not clamped)."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), lr_mlp: float = 0.01, channel_max: int = 512,
                 fused_modconv: bool = False):
        super().__init__()
        log_size = int(math.log2(size))
        if 2 ** log_size != size or size < 8:
            raise ValueError(f"generator size must be a power of two >= 8, got {size}")
        self.size, self.style_dim, self.log_size = size, style_dim, log_size
        self.config = {"size": size, "style_dim": style_dim, "n_mlp": n_mlp, "channel_multiplier": channel_multiplier,
                           "blur_kernel": list(blur_kernel), "lr_mlp": lr_mlp, "channel_max": channel_max}
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])
        self.channels = official_channels(channel_multiplier, channel_max)
        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False)
        self.num_layers = (log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty, kept for layout parity with the official module
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        in_ch = c4
        for lvl in range(3, log_size + 1):
            out_ch = self.channels[2 ** lvl]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch
        self.n_latent = log_size * 2 - 2
        self.set_fused_modconv(fused_modconv)

    def set_fused_modconv(self, fused: bool) -> None:
        """Pick the modulated-conv form: per-sample grouped conv (True, the official default) or
        the batched form (False, faster on CPU); both give the same image up to rounding."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = bool(fused)

    # -- latents -----------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, style_dim) -> w (N, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` normal draws: shape (style_dim,)."""
        dev = self.input.input.device
        z = torch.randn(n, self.style_dim, generator=generator).to(dev)
        return self.mapping(z).mean(0)

    def row_resolutions(self) -> list[int]:
        """The output resolution each W+ row acts on (the toRGB rows count at the resolution of
        the next upsampling conv they also drive; the last row is the final toRGB)."""
        res = [4]
        for i in range(1, self.n_latent):
            res.append(min(2 ** ((i + 3) // 2), self.size))
        return res

    # -- noise -------------------------------------------------------------------------------
    def const_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def random_noise(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh per-sample noise (the official ``randomize_noise=True``), from ``generator``."""
        dev = self.input.input.device
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        out = []
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            out.append(torch.randn(batch, 1, r, r, generator=generator, device=gen_dev).to(dev))
        return out

    def resolve_noise(self, noise: NoiseMode | Sequence[torch.Tensor], batch: int,
                      generator: torch.Generator | None = None) -> list[torch.Tensor]:
        if isinstance(noise, str):
            if noise == "const":
                return self.const_noise()
            if noise == "random":
                return self.random_noise(batch, generator)
            raise ValueError(f"noise must be 'random', 'const' or a list of tensors, got {noise!r}")
        return list(noise)

    # -- synthesis ---------------------------------------------------------------------------
    def synthesize(self, w: torch.Tensor, noise: NoiseMode | Sequence[torch.Tensor] = "random",
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """w (N, style_dim) or W+ (N, n_latent, style_dim) -> image (N, 3, size, size), ~[-1,1]."""
        if w.ndim == 2:
            w = w[:, None].expand(-1, self.n_latent, -1)
        if w.shape[1] != self.n_latent:
            raise ValueError(f"W+ needs {self.n_latent} rows for a {self.size} px generator, got {w.shape[1]}")
        b = w.shape[0]
        noises = self.resolve_noise(noise, b, generator)
        out = self.input(b)
        out = self.conv1(out, w[:, 0], noises[0])
        skip = self.to_rgb1(out, w[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, w[:, i], noises[2 * k + 1])
            out = self.convs[2 * k + 1](out, w[:, i + 1], noises[2 * k + 2])
            skip = to_rgb(out, w[:, i + 2], skip)
            i += 2
        return skip

    def forward(self, w: torch.Tensor, noise: NoiseMode | Sequence[torch.Tensor] = "random",
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.synthesize(w, noise, generator)
