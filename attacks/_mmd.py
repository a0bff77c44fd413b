"""Multi-kernel maximum mean discrepancy, as StatAttack (Hou et al., CVPR 2023) uses it.

Five Gaussian kernels ``exp(-d^2 / b)`` with bandwidths ``b in {m/4, m/2, m, 2m, 4m}``, where ``m``
is the mean squared distance over distinct pairs of the pooled batch (source and target together),
detached so the bandwidth does not move with the attack. Biased estimate; source and target must
have the same number of rows.
"""

from __future__ import annotations

import torch


def multi_kernel_mmd(source: torch.Tensor, target: torch.Tensor, kernels: int = 5,
                     multiplier: float = 2.0) -> torch.Tensor:
    """MMD^2 between two equal-sized batches of feature vectors (N,F); a scalar >= 0."""
    if source.shape != target.shape:
        raise ValueError(f"MMD needs equal-sized batches, got {tuple(source.shape)} and {tuple(target.shape)}")
    pooled = torch.cat([source, target]).float()
    n = pooled.shape[0]
    sq_dist = (pooled[:, None, :] - pooled[None, :, :]).pow(2).sum(-1)
    mean_sq = (sq_dist.detach().sum() / (n * n - n)).clamp_min(1e-12)
    kernel = sum(torch.exp(-sq_dist / (mean_sq * multiplier ** (i - kernels // 2))) for i in range(kernels))
    b = source.shape[0]
    return (kernel[:b, :b] + kernel[b:, b:] - kernel[:b, b:] - kernel[b:, :b]).mean()
