"""The Detector contract, checked where detector outputs are consumed: ``forward(x01)`` returns
finite logits of shape ``(B, 2)`` ordered ``[real, fake]``.

Without the check a ``(B, 3)`` output is silently softmaxed over three classes, ``(B,)`` crashes
deep in the loop, and NaN/inf rows drop out of the records (a leaderboard of 0.0 or a half-finite
50.0). A detector that breaks the contract ends the run with one line naming it.
"""

from __future__ import annotations

import torch

from bench.errors import UserError
from bench.types import p_fake_from_logits


def check_logits(name: str, logits: torch.Tensor, batch: int) -> torch.Tensor:
    """``logits`` if it is a finite ``(batch, 2)`` tensor, else a ``UserError`` naming ``name``."""
    if not isinstance(logits, torch.Tensor):
        raise UserError(f"detector {name!r} returned {type(logits).__name__}, not a logits tensor of shape "
                        f"({batch}, 2); forward(x01) must return [real, fake] logits")
    if logits.dim() != 2 or logits.shape != (batch, 2):
        raise UserError(f"detector {name!r} returned logits of shape {tuple(logits.shape)} for a batch of {batch}; "
                        f"the contract is ({batch}, 2) ordered [real, fake] (wrap a single logit with two_way)")
    bad = int((~torch.isfinite(logits.detach())).any(dim=1).sum())
    if bad:
        raise UserError(f"detector {name!r} returned non-finite logits (NaN or inf) in {bad} of {batch} rows; "
                        "check its checkpoint and input normalisation")
    return logits


def checked_p_fake(name: str, detector: torch.nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """``p_fake`` of a batch, after checking the detector's logits against the contract."""
    rule = getattr(detector, "p_fake_rule", "softmax")  # the checkpoint source's rule (RECCE from Artifact-Eraser: sigmoid)
    return p_fake_from_logits(check_logits(name, detector(x01), x01.shape[0]), rule)


def detector_name(detector: torch.nn.Module) -> str:
    """A name for messages when only the module is at hand (inside an attack)."""
    arch = getattr(detector, "arch", None)
    if isinstance(arch, dict) and arch.get("name"):
        return str(arch["name"])
    return type(detector).__name__


@torch.no_grad()
def probe_detectors(detectors: dict[str, torch.nn.Module], x01: torch.Tensor) -> None:
    """Run every detector once on a small batch before any work: a broken one fails up front."""
    for name, detector in detectors.items():
        checked_p_fake(name, detector, x01)
