"""Helpers shared by the pixel-space attacks: eval-mode and RNG hygiene, the loss toward "real".

Not a registry module (the leading underscore keeps the registry from importing it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bench.detector_contract import check_logits, detector_name
from bench.errors import UserError
from bench.types import REAL, p_fake_from_logits


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval() and give every submodule its own ``training`` flag back afterwards.

    torchattacks calls ``model.eval()`` and then restores only the top-level flag with
    ``model.train()``, which would flip submodules that were deliberately left in another mode.
    Snapshotting per module makes an attack leave no trace on the detector.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, was_training in flags:
            module.training = was_training


def draw_seed(generator: torch.Generator | None) -> int:
    """One 63-bit seed from ``generator`` (or from the global RNG when none is given)."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64))


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG of ``device`` with ``seed`` for the block, then restore it.

    Libraries that draw from the global RNG (torchattacks' PGD random start) become a pure
    function of ``seed``, and the caller's global RNG stream is left exactly as it was.
    """
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield


class TwoWayLogits(nn.Module):
    """The detector as torchattacks sees it: ``x01 -> float32 logits (B,2)`` ordered [real, fake].

    A single-logit output (B,) or (B,1) becomes ``[0, z]`` (softmax = sigmoid, CE = BCE); logits
    are cast to fp32 so cross-entropy does not saturate under bf16 autocast.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        # Mirror the detector's own flag (a fresh Module says training=True, and torchattacks would
        # "restore" that by calling train() on the whole detector after the attack).
        self.training = detector.training

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        logits = self.detector(x01)
        if logits.dim() == 1 or logits.shape[1] == 1:
            z = logits.reshape(-1, 1)
            logits = torch.cat([torch.zeros_like(z), z], dim=1)
        try:
            return check_logits(detector_name(self.detector), logits, x01.shape[0]).float()
        except UserError:
            # looked at only on failure (no extra reduction per step): blame a non-finite iterate
            # on the attack, not on the detector's checkpoint
            if not torch.isfinite(x01).all():
                raise UserError(f"the attack produced a non-finite image for {detector_name(self.detector)}: "
                                "its gradient was zero at some step (e.g. SI-NI-FGSM divides by the gradient's "
                                "mean absolute value), which usually means gradient masking; attack health "
                                "flags GRAD_ZERO for the other rows (docs/field-metrics.md)") from None
            raise


def loss_away_from_label(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the true label, to be *ascended* (torchattacks' untargeted loss): on fakes
    (label 1) it pushes the detector toward "real"."""
    return F.cross_entropy(logits.float(), labels)


def loss_toward_real(logits: torch.Tensor, rule: str = "softmax") -> torch.Tensor:
    """The official Artifact-Eraser pixel loss, to be *descended*: ``MSE(p_fake, 0)``."""
    p = p_fake_from_logits(logits, rule)  # the detector's own rule (Artifact-Eraser's RECCE: sigmoid)
    return F.mse_loss(p, torch.full_like(p, float(REAL)))
