"""EFAA (re-implementation): frequency-domain adversarial attack on face-forgery detectors.

Jia et al., "Exploring Frequency Adversarial Attacks for Face Forgery Detection", CVPR 2022,
published no code. What the paper states and this module keeps:

- the perturbation lives in the DCT domain of the image;
- a fusion module weights the salient frequency regions of the adversarial signal;
- a hybrid attack perturbs the spatial and the frequency domain together, combined in a
  meta-learning style (a meta-train step in one domain, a meta-test step in the other);
- the perturbation is bounded by an L-inf budget on the image.

What is reconstructed here (our choices, not the paper's):

- transform: orthonormal 8x8 block DCT (JPEG-style, the default) or the global DCT, both exactly
  invertible for any image size (``attacks/_dct.py``);
- update: signed gradient steps on the DCT coefficients (PGD in the coefficient domain) of the
  cross-entropy on the true label, ascended; the L-inf ball and [0,1] are enforced in pixel space
  after every step. ``step`` is in coefficient units; the transform is orthonormal, so one step
  has the same L2 size as a pixel sign step of ``step``;
- fusion module: a saliency weight ``w = A / mean(A)`` per sample, where ``A`` is the |gradient|
  of each coefficient accumulated over the steps so far. The mean weight is 1, so the total step
  budget is unchanged but redistributed: coefficients the detector is consistently sensitive to
  move by several steps at once, the rest barely move (``saliency=False`` gives plain sign steps);
- hybrid (``mode="hybrid"``): per iteration, a spatial sign step (meta-train) gives a virtual
  point; the frequency gradient is taken at that virtual point (meta-test); the update is the sum
  of the spatial step and the frequency step, taken from the current point (first-order
  MAML-style). Two detector passes per iteration.

Attack health (``bench/attack_health.py``): the gradient bits look at every pixel gradient (both
of a hybrid step); ``final_loss`` is the per-sample cross-entropy at the last step's iterate;
``SATURATED_START`` reads ``p_fake`` of the first pass (the clean image), at no extra pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from attacks._common import TwoWayLogits, frozen_eval, loss_away_from_label
from attacks._dct import DCT2d
from bench.attack_health import AttackHealth, grad_or_zero, gradient_state
from bench.errors import UserError
from bench.registry import register_attack
from bench.types import Attack, AttackOutput, Detector, p_fake_from_logits


class EFAA(Attack):
    """EFAA (re-implementation): sign steps on saliency-weighted DCT coefficients, L-inf in pixels."""

    def __init__(self, eps: float = 8 / 255, step: float = 2 / 255, steps: int = 10,
                 transform: str = "block", block: int = 8, mode: str = "frequency",
                 saliency: bool = True, spatial_step: float | None = None):
        if transform not in ("block", "global"):
            raise UserError(f"efaa: transform {transform!r} unknown; use 'block' or 'global'.")
        if mode not in ("frequency", "hybrid"):
            raise UserError(f"efaa: mode {mode!r} unknown; use 'frequency' or 'hybrid'.")
        self.eps, self.step, self.steps = float(eps), float(step), int(steps)
        self.block = int(block) if transform == "block" else None
        self.mode, self.saliency = mode, saliency
        self.spatial_step = float(spatial_step if spatial_step is not None else step)

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None,
                 reference: torch.Tensor | None = None) -> AttackOutput:
        model = TwoWayLogits(detector)
        labels = labels.to(device=x01.device, dtype=torch.long)
        x0 = x01.detach()
        dct = DCT2d(x0.shape[-2], x0.shape[-1], self.block, device=x0.device, dtype=x0.dtype)
        health = AttackHealth(len(x0), x0.device)
        rule = getattr(detector, "p_fake_rule", "softmax")

        def pixel_grad(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The pixel gradient at ``x0 + delta`` (its health flagged) and the logits there."""
            x = (x0 + delta).requires_grad_(True)
            logits = model(x)
            grad = grad_or_zero(loss_away_from_label(logits, labels), x)
            health.flag(*gradient_state(grad), still_fake=p_fake_from_logits(logits.detach(), rule) > 0.5)
            return grad, logits.detach()

        def project(delta: torch.Tensor) -> torch.Tensor:
            delta = delta.clamp(-self.eps, self.eps)
            return (x0 + delta).clamp(0, 1) - x0

        delta = torch.zeros_like(x0)
        accumulated = torch.zeros_like(x0)  # the fusion stand-in: sum of |grad| per coefficient
        with frozen_eval(detector):
            for i in range(self.steps):
                spatial = torch.zeros_like(x0)
                at = delta
                if self.mode == "hybrid":  # meta-train in pixels, meta-test in frequency
                    grad, iterate_logits = pixel_grad(delta)
                    spatial = self.spatial_step * grad.sign()
                    at = project(delta + spatial)
                grad, logits = pixel_grad(at)
                iterate_logits = logits if self.mode == "frequency" else iterate_logits
                if i == 0:
                    health.start(p_fake_from_logits(iterate_logits, rule))
                health.count_step(F.cross_entropy(iterate_logits, labels, reduction="none"))
                coeff_grad = dct.forward(grad)
                accumulated += coeff_grad.abs()
                weight = self._saliency(accumulated)
                frequency = dct.inverse(self.step * weight * coeff_grad.sign())
                delta = project(delta + spatial + frequency)
        adv = (x0 + delta).detach()
        return AttackOutput(adv, {"linf": delta.abs().flatten(1).amax(1), "steps": self.steps, **health.info()})

    def _saliency(self, accumulated: torch.Tensor) -> torch.Tensor:
        if not self.saliency:
            return torch.ones_like(accumulated)
        mean = accumulated.flatten(1).mean(1).clamp_min(1e-30).view(-1, 1, 1, 1)
        return accumulated / mean

    def budget(self) -> dict[str, Any]:
        return {"norm": "linf", "eps": self.eps, "steps": self.steps}


@register_attack("efaa", version="1", accepts=(EFAA,), threat_model="linf", presets={
    "block": {"transform": "block", "mode": "frequency"},
    "global": {"transform": "global", "mode": "frequency"},
    "hybrid": {"transform": "block", "mode": "hybrid"},
})
def efaa(**kwargs) -> EFAA:
    """EFAA (re-implementation): DCT-domain sign steps, saliency weights, L-inf in pixel space."""
    return EFAA(**kwargs)
