"""The differentiable degradations of StatAttack (Hou et al., CVPR 2023), batched, any H x W.

- exposure: a smooth bias field ``B`` added in log space, ``x * exp(B)`` (= ``exp(log x + B)``
  without the log of 0), ``B`` a 2-D polynomial of total degree ``degree`` on a [-1,1] grid, one
  field for all channels, sampled through a coarse flow field (H/8 x W/8, upsampled bilinearly);
- blur: a per-pixel, per-channel 3x3 Gaussian with weights ``exp(-d^2 / 2 * s^2)`` (``s`` is an
  inverse width; reflection padding at the border);
- noise: additive (the caller clamps it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def polynomial_basis(height: int, width: int, degree: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Monomials ``x^t y^l`` with ``t + l <= degree`` on a [-1,1] grid: (P, H, W), P = (d+1)(d+2)/2."""
    x = torch.linspace(-1, 1, width, device=device, dtype=dtype)[None, :]
    y = torch.linspace(-1, 1, height, device=device, dtype=dtype)[:, None]
    return torch.stack([x ** t * y ** ell for t in range(degree + 1) for ell in range(degree - t + 1)])


def identity_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """grid_sample's identity grid (H, W, 2) in (x, y) order, align_corners=True convention."""
    x = torch.linspace(-1, 1, width, device=device, dtype=dtype)
    y = torch.linspace(-1, 1, height, device=device, dtype=dtype)
    return torch.stack([x[None, :].expand(height, -1), y[:, None].expand(-1, width)], dim=-1)


def warped_bias_field(coef: torch.Tensor, flow: torch.Tensor, basis: torch.Tensor,
                      grid: torch.Tensor) -> torch.Tensor:
    """Bias field (B,1,H,W) from polynomial coefficients (B,P) sampled through a coarse flow (B,h,w,2)."""
    height, width = basis.shape[-2:]
    field = torch.einsum("bp,phw->bhw", coef, basis)[:, None]
    dense_flow = F.interpolate(flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                               align_corners=False).permute(0, 2, 3, 1)
    warped = (grid + dense_flow).clamp(-1, 1)
    return F.grid_sample(field, warped, mode="bilinear", padding_mode="zeros", align_corners=True)


def adaptive_gaussian_blur(x: torch.Tensor, inverse_width: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Blur each pixel of x (B,C,H,W) with its own (2r+1)^2 Gaussian of inverse width ``s`` (B,C,H,W)."""
    padded = F.pad(x, (radius,) * 4, mode="reflect")
    height, width = x.shape[-2:]
    s2 = inverse_width * inverse_width
    weights, shifted = [], []
    for dy in range(-radius, radius + 1):  # a loop over the 9 kernel taps, not over samples
        for dx in range(-radius, radius + 1):
            weights.append(torch.exp(-(dy * dy + dx * dx) / 2 * s2))
            shifted.append(padded[..., radius + dy:radius + dy + height, radius + dx:radius + dx + width])
    total = sum(weights)
    return sum(w * v for w, v in zip(weights, shifted)) / total
