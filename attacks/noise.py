"""``uniform_noise``: the control row. Random L-inf noise of the attacks' budget, no detector
query: the floor any attack must beat at its budget.

``distribution="sign"`` (default) puts every pixel at a corner of the L-inf ball, ``x +- eps``
with a fair coin, the largest random perturbation the budget allows; ``"uniform"`` draws each
pixel from ``U(-eps, eps)``. The result is clamped to [0,1]. The noise is drawn on the CPU from
the caller's generator, so it is the same on every device.

Attack health (``bench/attack_health.py``): ``steps_taken`` 0 and ``final_loss`` NaN (no loss);
no ``health_flags``, so the leaderboard shows n/a: the control never calls the detector (not even
to check a saturated start) and has no gradient that could be masked.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks._budgets import eps_presets
from bench.errors import UserError
from bench.registry import register_attack
from bench.types import Attack, AttackOutput, Detector

DISTRIBUTIONS = ("sign", "uniform")


class UniformNoise(Attack):
    """``x + eps * noise``, clamped to [0,1]; the detector is never called."""

    def __init__(self, eps: float, distribution: str):
        self.eps, self.distribution = float(eps), distribution

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None,
                 reference: torch.Tensor | None = None) -> AttackOutput:
        u = torch.rand(x01.shape, generator=generator, dtype=torch.float32)  # [0,1), CPU
        noise = torch.where(u < 0.5, -1.0, 1.0) if self.distribution == "sign" else 2 * u - 1
        adv = (x01 + self.eps * noise.to(x01.device)).clamp(0, 1)
        n = len(x01)
        return AttackOutput(adv, {"linf": (adv - x01).abs().flatten(1).amax(1), "steps": 0,
                                  "steps_taken": torch.zeros(n, dtype=torch.int64, device=x01.device),
                                  "final_loss": torch.full((n,), float("nan"), device=x01.device)})

    def budget(self) -> dict[str, Any]:
        return {"norm": "linf", "eps": self.eps, "steps": 0}


@register_attack("uniform_noise", version="1", threat_model="linf", presets=eps_presets())
def uniform_noise(eps: float = 8 / 255, distribution: str = "sign") -> Attack:
    """Random L-inf noise control (random sign or uniform), seeded; never queries the detector."""
    if distribution not in DISTRIBUTIONS:
        raise UserError(f"uniform_noise: unknown distribution {distribution!r}; use 'sign' or 'uniform'.")
    if not eps >= 0:
        raise UserError(f"uniform_noise: eps must be >= 0 (got {eps}).")
    return UniformNoise(eps, distribution)
