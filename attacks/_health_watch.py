"""Attack health of a torchattacks loop, observed from outside (torchattacks runs its own loop).

torchattacks is handed :class:`WatchedLogits` as its model. On every forward whose input requires
a gradient (one per gradient the attack takes) the wrapper keeps the per-sample cross-entropy on
the true label (torchattacks' untargeted loss) and ``p_fake``, and hooks the input tensor so that
the backward pass hands over ``d loss / d input``; the hook reduces it to two booleans per sample
(all zero, any non-finite) and returns it unchanged. No attack step is re-implemented, and the
extra work is a few reductions per gradient: no extra forward or backward pass.

What the hook sees, per attack:

- FGSM, PGD, MI-FGSM: the gradient at the iterate (one per step);
- DI-FGSM, TI-FGSM: the gradient w.r.t. the randomly resized-and-padded input the detector saw
  (TI smooths it only afterwards); it is zero exactly when the gradient w.r.t. the iterate is,
  since the transform is a resize and a pad;
- VMI-FGSM: ``1 + samples`` gradients per step (the iterate, then its neighbours);
- SI-NI-FGSM: ``copies`` gradients per step (the look-ahead point scaled by 1, 1/2, 1/4, ...).

``steps_taken`` counts torchattacks' outer iterations: gradients seen / gradients per step.
``final_loss`` is the loss of the first gradient of the last step (the iterate for FGSM, PGD,
MI-FGSM, VMI-FGSM; the transformed iterate for DI/TI; the unscaled look-ahead point for SI-NI),
i.e. the loss at the point the last update started from, as in the official sign walk.
``SATURATED_START`` reads ``p_fake`` of the first forward: the attack's own start point (the clean
image, or PGD's random start), at no extra query. The flags of every gradient of a step count.

A detector with no gradient path to its input at all (a ``.detach()`` inside) would make
torchattacks' ``autograd.grad`` raise; the wrapper adds a zero-gradient path instead, so the
attack runs, stands still and is flagged ``GRAD_ZERO``, as the official walk does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks._common import TwoWayLogits
from bench.attack_health import AttackHealth, gradient_state
from bench.types import p_fake_from_logits


@dataclass
class GradientEvent:
    """One forward that torchattacks differentiates: its loss, and its gradient once seen."""

    loss: torch.Tensor  # (B,) CE on the true label
    p_fake: torch.Tensor  # (B,)
    zero: torch.Tensor | None = None  # (B,) bool, set by the hook
    nonfinite: torch.Tensor | None = None

    def see(self, grad: torch.Tensor) -> None:
        self.zero, self.nonfinite = gradient_state(grad)


class WatchedLogits(TwoWayLogits):
    """``TwoWayLogits`` that records one :class:`GradientEvent` per differentiated forward."""

    def __init__(self, detector: torch.nn.Module, labels: torch.Tensor, gradients_per_step: int = 1):
        super().__init__(detector)
        self.labels = labels
        self.rule = getattr(detector, "p_fake_rule", "softmax")
        self.gradients_per_step = int(gradients_per_step)
        self.events: list[GradientEvent] = []

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x01)
        if torch.is_grad_enabled() and x01.requires_grad:
            if not logits.requires_grad:  # no gradient path: give one whose gradient is zero
                logits = logits + 0.0 * x01.flatten(1)[:, :1]
            self._watch(x01, logits.detach())
        return logits

    def _watch(self, x01: torch.Tensor, logits: torch.Tensor) -> None:
        if len(self.labels) == len(logits):
            loss = F.cross_entropy(logits, self.labels, reduction="none")
        else:  # not a batch of our samples (no torchattacks 3.5.1 loop does this)
            loss = torch.full((len(logits),), float("nan"), device=logits.device)
        event = GradientEvent(loss, p_fake_from_logits(logits, self.rule))
        self.events.append(event)
        x01.register_hook(event.see)  # returns None: the gradient passes on unchanged

    def info(self) -> dict[str, torch.Tensor]:
        """``final_loss``, ``steps_taken``, ``health_flags`` of the batch (see the module doc)."""
        n = len(self.labels)
        seen = [e for e in self.events if e.zero is not None and len(e.loss) == n]
        health = AttackHealth(n, self.labels.device)
        if seen:
            health.start(seen[0].p_fake)
        per_step = self.gradients_per_step
        for first in range(0, len(seen) - per_step + 1, per_step):
            step = seen[first:first + per_step]
            for event in step:
                assert event.zero is not None and event.nonfinite is not None
                health.flag(event.zero, event.nonfinite, still_fake=event.p_fake > 0.5)
            health.count_step(step[0].loss)
        return health.info()
