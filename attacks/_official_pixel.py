"""The pixel baselines as the official Artifact-Eraser code runs them (attack/attack_white_img.py).

torchattacks has no equivalent of these three loops, so they are written out here once, as one
sign walk with switches (REFERENCE.md section 3):

- loss ``MSE(p_fake, 0)`` descended (toward "real"), not cross-entropy ascended;
- FGSM is iterative and has no projection (BIM without the ball): ``x <- clip(x - a sign g)``;
- MI-FGSM has no L1 normalisation of the gradient (``g <- g + 0.89 m``) and no projection;
- PGD has no random start, projects onto the ``beta`` ball but does not clip to the valid range
  inside the loop (the official code clamps only when it writes the PNG; we clamp once at the
  end because images crossing a component boundary must lie in [0,1]).

All sizes here are in [0,1] units; the presets in ``attacks/pixel.py`` convert from the official
[-1,1] units (a difference in [-1,1] is twice the same difference in [0,1]).
"""

from __future__ import annotations

from typing import Any

import torch

from attacks._common import TwoWayLogits, frozen_eval, loss_toward_real
from bench.attack_health import AttackHealth, grad_or_zero
from bench.types import Attack, AttackOutput, Detector, p_fake_from_logits


class OfficialSignWalk(Attack):
    """``steps`` signed-gradient steps of size ``step`` on ``MSE(p_fake, 0)``.

    ``eps=None`` means no projection (official FGSM and MI-FGSM); ``decay=None`` means no momentum;
    ``clip_each_step`` clamps to [0,1] after every step (official FGSM and MI-FGSM do, PGD does not).
    """

    def __init__(self, step: float, steps: int, eps: float | None = None, decay: float | None = None,
                 clip_each_step: bool = True):
        self.step, self.steps, self.eps = float(step), int(steps), eps
        self.decay, self.clip_each_step = decay, clip_each_step

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None,
                 reference: torch.Tensor | None = None) -> AttackOutput:
        model = TwoWayLogits(detector)
        rule = getattr(detector, "p_fake_rule", "softmax")
        x0 = x01.detach()
        adv = x0.clone()
        momentum = torch.zeros_like(x0)
        health = AttackHealth(len(x0), x0.device)
        with frozen_eval(detector):
            for i in range(self.steps):
                adv.requires_grad_(True)
                logits = model(adv)
                grad = grad_or_zero(loss_toward_real(logits, rule), adv)
                p = p_fake_from_logits(logits.detach(), rule)
                if i == 0:
                    health.start(p)
                health.step(p ** 2, grad, still_fake=p > 0.5)  # per-sample MSE(p_fake, 0)
                if self.decay is not None:
                    grad = grad + self.decay * momentum  # no L1 normalisation, as in the official code
                    momentum = grad
                adv = adv.detach() - self.step * grad.sign()
                if self.eps is not None:
                    adv = x0 + (adv - x0).clamp(-self.eps, self.eps)
                if self.clip_each_step:
                    adv = adv.clamp(0, 1)
        adv = adv.detach().clamp(0, 1)
        return AttackOutput(adv, {"linf": (adv - x0).abs().flatten(1).amax(1), "steps": self.steps,
                                  **health.info()})

    def budget(self) -> dict[str, Any]:
        # Without projection the reachable L-inf distance is steps * step.
        eps = self.eps if self.eps is not None else self.steps * self.step
        return {"norm": "linf", "eps": eps, "steps": self.steps}
