"""Attack health: per-sample signs that an attack's gradient told it nothing.

A detector whose gradient is zero (a hard threshold, a ``.detach()``, a softmax saturated in
float32) or non-finite makes every gradient attack stall, and the stall reads as robustness.
An attack loop feeds :class:`AttackHealth` once per step and returns its :meth:`AttackHealth.info`
in ``AttackOutput.info``; the runner stores the tensors as record columns ``info_final_loss``,
``info_steps_taken`` and ``info_health_flags``. :func:`health_table` counts flagged samples per
(source, attack, target) cell and :func:`health_warnings` words the cells ``bench show`` should
warn about (more than 5 % flagged).

``health_flags`` is a bit field (:class:`HealthFlag`):

- ``GRAD_ZERO`` (1): the input gradient was exactly zero at some step while the source still
  called the sample fake (``p_fake > 0.5``; a zero gradient after success is not masking);
- ``GRAD_NONFINITE`` (2): the gradient had a NaN or inf at some step;
- ``SATURATED_START`` (4): ``p_fake`` of the clean input was exactly 0 or 1 in float32, where
  softmax gives (almost) no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntFlag

import numpy as np
import pandas as pd
import torch

from bench.types import p_fake_from_logits, two_way

WARN_FRACTION = 0.05
FLAG_COLUMN = "info_health_flags"
CELL = ("source", "attack", "target")


class HealthFlag(IntFlag):
    GRAD_ZERO = 1
    GRAD_NONFINITE = 2
    SATURATED_START = 4


def saturated(p_fake: torch.Tensor) -> torch.Tensor:
    """Per sample: ``p_fake`` is exactly 0 or 1 in float32."""
    p = p_fake.detach().float()
    return (p == 0) | (p == 1)


@torch.no_grad()
def saturated_at_start(detector: torch.nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """Per sample: the detector's ``p_fake`` on ``x01`` (softmax in float32) is exactly 0 or 1.
    Accepts ``(B,2)`` ``[real, fake]`` logits or a single logit per sample."""
    logits = detector(x01)
    if logits.dim() == 1 or logits.shape[1] == 1:
        logits = two_way(logits)
    return saturated(p_fake_from_logits(logits))


def gradient_state(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample of a gradient (B, ...): (all exactly zero, any NaN or inf), both (B,) bool."""
    g = grad.detach().flatten(1)
    return (g == 0).all(dim=1), ~torch.isfinite(g).all(dim=1)


def grad_or_zero(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``d loss / d x``, or zeros when no gradient path reaches ``x`` (a ``.detach()`` or a
    non-differentiable op inside the detector): then the attack sees, and the tracker flags, a
    zero gradient instead of crashing on ``autograd.grad``."""
    if not loss.requires_grad:
        return torch.zeros_like(x)
    grad, = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


class AttackHealth:
    """Accumulates per-sample health over an attack's steps; cheap (a few reductions per step)."""

    def __init__(self, batch_size: int, device: torch.device | str | None = None):
        self.flags = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self.steps_taken = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self.final_loss = torch.full((batch_size,), float("nan"), dtype=torch.float32, device=device)

    def start(self, p_fake: torch.Tensor) -> None:
        """Record start saturation from the first forward pass's ``p_fake`` (no extra query)."""
        self.flags |= saturated(p_fake).to(self.flags.device).long() * HealthFlag.SATURATED_START

    def start_from(self, detector: torch.nn.Module, x01: torch.Tensor) -> None:
        """Record start saturation with one extra forward pass of ``detector`` on ``x01``."""
        self.flags |= saturated_at_start(detector, x01).to(self.flags.device).long() * HealthFlag.SATURATED_START

    def step(self, loss: torch.Tensor, grad: torch.Tensor, active: torch.Tensor | None = None,
             still_fake: torch.Tensor | None = None) -> None:
        """One step: per-sample ``loss`` (B,), the input gradient ``grad`` (B, ...) of this step.

        ``active`` (B,) bool marks samples that took this step (default all: early-stopped samples
        pass False); ``still_fake`` (B,) bool limits the zero-gradient flag to samples the source
        still calls fake (default all).
        """
        self.flag(*gradient_state(grad), active=active, still_fake=still_fake)
        self.count_step(loss, active)

    def flag(self, zero: torch.Tensor, nonfinite: torch.Tensor, active: torch.Tensor | None = None,
             still_fake: torch.Tensor | None = None) -> None:
        """Set the gradient bits from per-sample ``zero`` / ``nonfinite`` (B,) bool (see
        :func:`gradient_state`) without counting a step: for a step that takes several gradients
        (VMI's neighbours, SINI's copies, EFAA's hybrid pair)."""
        device = self.flags.device
        active = torch.ones_like(self.flags, dtype=torch.bool) if active is None else active.to(device).bool()
        fake = active if still_fake is None else active & still_fake.to(device).bool()
        zero, nonfinite = zero.to(device).bool() & fake, nonfinite.to(device).bool() & active
        self.flags |= zero.long() * HealthFlag.GRAD_ZERO + nonfinite.long() * HealthFlag.GRAD_NONFINITE

    def count_step(self, loss: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Count one step for the ``active`` samples (default all) and keep their ``loss`` (B,)."""
        device = self.final_loss.device
        active = torch.ones_like(self.steps_taken, dtype=torch.bool) if active is None else active.to(device).bool()
        self.steps_taken += active.long()
        loss = loss.detach().float().reshape(-1).to(device)
        self.final_loss = torch.where(active, loss, self.final_loss)

    def info(self) -> dict[str, torch.Tensor]:
        """Per-sample tensors for ``AttackOutput.info``. ``final_loss`` is the loss at each
        sample's last step (of the iterate that step updated; NaN if it took none)."""
        return {"final_loss": self.final_loss.clone(), "steps_taken": self.steps_taken.clone(),
                "health_flags": self.flags.clone()}


def flag_names(bits: int) -> list[str]:
    """``[\"GRAD_ZERO\", ...]`` for a flags value."""
    return [flag.name for flag in HealthFlag if int(bits) & flag]


def health_table(records: pd.DataFrame, by: Sequence[str] = CELL, flag_column: str = FLAG_COLUMN,
                 warn_fraction: float = WARN_FRACTION) -> pd.DataFrame:
    """Per cell: ``n``, ``n_flagged``, ``frac_flagged``, one count per flag, and ``warn``
    (``frac_flagged > warn_fraction``). A cell whose attack recorded no health flags has NaN
    counts and ``reason = "not_recorded"``, never 0."""
    rows = []
    for key, group in records.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(by, key)), "n": len(group)}
        flags = group[flag_column] if flag_column in group else pd.Series(np.nan, index=group.index)
        recorded = flags.dropna().to_numpy().astype(np.int64)
        if recorded.size == 0:
            row.update({"n_flagged": np.nan, "frac_flagged": np.nan, "warn": False, "reason": "not_recorded",
                        **{f"n_{f.name.lower()}": np.nan for f in HealthFlag}})
        else:
            n_flagged = int((recorded != 0).sum())
            frac = n_flagged / recorded.size
            row.update({"n_flagged": n_flagged, "frac_flagged": frac, "warn": frac > warn_fraction, "reason": "",
                        **{f"n_{f.name.lower()}": int((recorded & f != 0).sum()) for f in HealthFlag}})
        rows.append(row)
    return pd.DataFrame(rows)


def attacked_cells(records: pd.DataFrame) -> pd.DataFrame:
    """The white-box cells (``source == target``). The flags belong to the attack run on the
    source, and every target's records repeat them; these cells hold each attacked fake once."""
    return records[records["source"] == records["target"]]


def flagged_per_attack(records: pd.DataFrame, flag_column: str = FLAG_COLUMN) -> pd.Series:
    """attack -> flagged samples over its white-box cells (each attacked fake once), as an object
    Series of ints, NaN where the attack recorded no flags (a count, not a measurement)."""
    if flag_column not in records or not set(CELL) <= set(records.columns):
        return pd.Series(dtype=object)  # no attack recorded flags
    table = health_table(attacked_cells(records), flag_column=flag_column)
    counts = {attack: (np.nan if cells["n_flagged"].isna().all() else int(cells["n_flagged"].sum()))
              for attack, cells in table.groupby("attack", sort=False)}
    return pd.Series(counts, dtype=object)


def health_warnings(records: pd.DataFrame, flag_column: str = FLAG_COLUMN,
                    warn_fraction: float = WARN_FRACTION) -> list[str]:
    """One line per (source, attack, target) cell with more than ``warn_fraction`` flagged (pass
    :func:`attacked_cells` for one line per attack run rather than per target)."""
    table = health_table(records, flag_column=flag_column, warn_fraction=warn_fraction)
    lines = []
    for row in table[table["warn"]].itertuples(index=False):
        counts = ", ".join(f"{f.name.lower().replace('_', ' ')} {int(getattr(row, 'n_' + f.name.lower()))}"
                           for f in HealthFlag)
        lines.append(f"{row.attack} from {row.source} on {row.target}: {int(row.n_flagged)} of {row.n} samples "
                     f"({100 * row.frac_flagged:.1f} %) flagged ({counts}): the attack's gradient was zero or "
                     f"non-finite, or p_fake saturated, so gradient masking may be reported as robustness")
    return lines
