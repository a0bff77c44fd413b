"""Attack health of the eraser's latent walk (``bench/attack_health.py`` on W+ codes).

The walk updates only the rows of the batch still walking (``idx``) and only the masked W+ rows,
so the tracker works on the whole batch and is fed per step with the walking rows' numbers:

- ``GRAD_ZERO`` / ``GRAD_NONFINITE`` look at ``d loss / d w`` on the W+ rows the walk updates
  (the level mask): a gradient that is zero there leaves the sign step at 0 even if other rows
  move, and it is zero on every row when the detector masks its gradient;
- ``SATURATED_START`` reads ``p_fake`` of the walk's first render ``G(w0)`` (the inversion, where
  the walk starts), at no extra pass;
- ``final_loss`` is the walk's own per-sample loss ``(p_fake - target)^2`` at each sample's last
  update; ``steps_taken`` counts updates, so it equals the walk's ``steps`` info (the kappa
  early stop freezes a sample at the step that grades it passing, before its update).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.attack_health import AttackHealth, gradient_state


class LatentWalkHealth:
    """An :class:`AttackHealth` over the batch, fed with the walking rows of each step."""

    def __init__(self, batch_size: int, device: torch.device, rows: Sequence[int]):
        self.health = AttackHealth(batch_size, device)
        self.batch_size, self.device, self.rows = batch_size, device, list(rows)

    def start(self, p_fake: torch.Tensor) -> None:
        """``p_fake`` (B,) of the walk's first render, for every sample."""
        self.health.start(p_fake)

    def step(self, idx: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor, updated: torch.Tensor,
             still_fake: torch.Tensor) -> None:
        """One step of the rows ``idx``: their loss (n,), latent gradient (n, n_latent, dim), which
        of them are updated (n,) bool (not frozen by the early stop) and still called fake."""
        zero, nonfinite = gradient_state(grad[:, self.rows])
        walking = self._scatter(idx, torch.ones_like(updated))
        self.health.flag(self._scatter(idx, zero), self._scatter(idx, nonfinite), active=walking,
                         still_fake=self._scatter(idx, still_fake))
        full_loss = torch.full((self.batch_size,), float("nan"), device=self.device)
        full_loss[idx] = loss.detach().float()
        self.health.count_step(full_loss, active=self._scatter(idx, updated))

    def _scatter(self, idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
        full[idx] = values.bool()
        return full

    def info(self) -> dict[str, torch.Tensor]:
        return self.health.info()
