"""Orthonormal 2-D DCT-II over the last two dimensions, by blocks (JPEG-style 8x8) or global.

Both are the separable transform ``C = M_h X M_w^T`` with an orthonormal ``M``: the DCT matrix of
the full side (global), or a block-diagonal stack of 8x8 DCT matrices whose last block is the DCT
of the remainder when the side is not a multiple of 8. A block-diagonal matrix of orthonormal
blocks is orthonormal, so the inverse is ``X = M_h^T C M_w`` for every image size, and the
transform is also its own adjoint's inverse: the gradient with respect to the coefficients is
the DCT of the gradient with respect to the pixels.
"""

from __future__ import annotations

import math

import torch


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The n x n orthonormal DCT-II matrix: ``D[k, i] = a_k cos(pi (2i + 1) k / 2n)``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(dtype)


def axis_matrix(n: int, block: int | None) -> torch.Tensor:
    """The per-axis transform for a side of length n: global DCT, or block-diagonal DCTs."""
    if block is None or block >= n:
        return dct_matrix(n)
    sizes = [block] * (n // block) + ([n % block] if n % block else [])
    return torch.block_diag(*[dct_matrix(s) for s in sizes])


class DCT2d:
    """``forward(x)`` -> DCT coefficients, ``inverse(c)`` -> pixels, for tensors (..., H, W).

    ``block=8`` gives the 8x8 block DCT, ``block=None`` the global DCT of the whole image.
    """

    def __init__(self, height: int, width: int, block: int | None = 8,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        self.block = block
        self.mh = axis_matrix(height, block).to(device=device, dtype=dtype)
        self.mw = axis_matrix(width, block).to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # exactness needs full precision
            return self.mh @ x.to(self.mh.dtype) @ self.mw.T

    def inverse(self, c: torch.Tensor) -> torch.Tensor:
        with torch.autocast(c.device.type, enabled=False):
            return self.mh.T @ c.to(self.mh.dtype) @ self.mw
