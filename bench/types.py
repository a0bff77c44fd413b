"""The contracts every component of artifact-bench speaks (see DESIGN.md, "Contracts").

Images crossing a component boundary are float32 tensors (B,3,H,W), RGB, in [0,1], at the
matrix's canonical size. Nothing else crosses a boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REAL, FAKE = 0, 1


class Detector(nn.Module):
    """A face-forgery detector: ``forward(x01) -> logits (B,2)`` ordered ``[real, fake]``.

    The detector owns its resize (to ``input_size``) and normalisation (``(x - mean) / std``), so
    callers always hand it [0,1] images of any size. Subclasses implement ``classify`` (logits of
    a normalised batch) and ``embed`` (pooled penultimate features of a normalised batch).

    Detectors are stateless: the same input gives the same output on every call. Single-logit
    models return ``two_way(z)`` = ``[0, z]`` so softmax equals sigmoid and cross-entropy equals BCE.
    """

    def __init__(self, input_size: int = 256, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5)):
        super().__init__()
        self.input_size = int(input_size)
        self.register_buffer("norm_mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("norm_std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    # -- what subclasses provide -------------------------------------------------------------
    def classify(self, xn: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, xn: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def cam_target_layers(self) -> list[nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the contract ------------------------------------------------------------------------
    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        if x01.shape[-2:] != (self.input_size, self.input_size):
            x01 = resize_to(x01, self.input_size)
        return (x01 - self.norm_mean) / self.norm_std

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.classify(self.preprocess(x01))

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (B,F); the statistical-consistency attack matches these."""
        return self.embed(self.preprocess(x01))

    # how the checkpoint's source scores: "softmax" (column 1) or "sigmoid" (of the fake logit alone);
    # set per source preset by detectors/sources.py
    p_fake_rule = "softmax"

    def p_fake(self, x01: torch.Tensor) -> torch.Tensor:
        return p_fake_from_logits(self(x01), self.p_fake_rule)


def two_way(z: torch.Tensor) -> torch.Tensor:
    """Wrap a single logit (B,) or (B,1) as ``[0, z]`` so softmax(.)[:,1] == sigmoid(z)."""
    z = z.reshape(z.shape[0], 1)
    return torch.cat([torch.zeros_like(z), z], dim=1)


def p_fake_from_logits(logits: torch.Tensor, rule: str = "softmax") -> torch.Tensor:
    # in fp32 even under autocast: a saturated bf16 softmax gives zero gradient.
    if rule == "sigmoid":  # Artifact-Eraser's RECCE: an element-wise sigmoid, column 1 read as p_fake
        return torch.sigmoid(logits.float()[:, FAKE])
    return torch.softmax(logits.float(), dim=1)[:, FAKE]


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch to size x size: exact box average when the factor is an integer
    (how the official code brings a 1024 px generator output to 256), bilinear otherwise."""
    h, w = x.shape[-2:]
    if h == w and h > size and h % size == 0:
        return F.avg_pool2d(x, h // size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=h > size or w > size)


@dataclass
class AttackOutput:
    """What an attack returns: the adversarial batch in [0,1] and per-sample info tensors
    (steps taken, latent change, ``inversion`` image for latent attacks, ...)."""

    adv01: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class Attack:
    """Base of every attack: ``attack(x01, labels, detector, generator) -> AttackOutput``.

    Batched, never a Python loop over samples, deterministic given ``generator``. Attacks that
    need real images of the same size (the statistical-consistency family) set
    ``needs_reference = True``; the runner then passes ``reference=`` a real batch of the same
    shape as ``x01``. Latent attacks set ``is_latent = True`` and return ``info["inversion"]``.
    """

    name: str = "attack"
    needs_reference: bool = False
    is_latent: bool = False

    def __call__(self, x01: torch.Tensor, labels: torch.Tensor, detector: Detector,
                 generator: torch.Generator | None = None,
                 reference: torch.Tensor | None = None) -> AttackOutput:  # pragma: no cover
        raise NotImplementedError

    def budget(self) -> dict[str, Any]:
        """The perturbation budget for the leaderboard: norm, eps in [0,1] units, steps."""
        return {}


@dataclass
class Sample:
    id: str
    image01: torch.Tensor  # (3,H,W) float32 in [0,1]
    label: int  # 0 = real, 1 = fake
    video_id: str = ""
    frame: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


# -- the record schema -----------------------------------------------------------------------------
# One row per (run, source, attack, target, sample). Records are the only truth; every table and
# figure is a view over them. Declared once here and checked on every write and read
# (``validate_records``): a column missing or of the wrong kind is an error, not a silent NaN.
RECORD_COLUMNS: dict[str, str] = {
    "run_id": "text", "source": "text", "attack": "text", "attack_kind": "text", "target": "text",
    "sample_index": "integer", "sample_id": "text", "video_id": "text", "label": "integer",
    "p_fake_clean": "number", "p_fake_inversion": "number",  # inversion == clean for pixel attacks
    "p_fake_adv": "number",
    "eligible": "flag", "inversion_fake": "flag", "success": "flag",
}
# measured once per (source, attack, sample): q_ quality metrics, info_ attack info (steps,
# latent change, ...), budget_ the attack's budget as text; p_fake_adv_post_<op> the target's
# score of the adversarial image after the post-processing <op> (``postprocess:``). A q_ metric
# that could not be measured is NaN with a reason code in q_<metric>_reason.
RECORD_OPTIONAL_PREFIXES = ("q_", "info_", "budget_", "p_fake_adv_post_")
_KINDS = {"text": "OSUT", "integer": "iu", "number": "fiu", "flag": "b"}


def validate_records(frame, where: str) -> None:
    """Raise ``UserError`` naming the first column that breaks the record schema."""
    from bench.errors import UserError

    for column, kind in RECORD_COLUMNS.items():
        if column not in frame:
            raise UserError(f"{where}: records lack the column {column!r} ({kind}); they were written by an "
                            "older or foreign version: rerun with `bench run --fresh`")
        dtype = frame[column].dtype
        if dtype.kind not in _KINDS[kind] and not (kind == "text" and str(dtype) in ("str", "string")):
            raise UserError(f"{where}: record column {column!r} must be {kind}, found {dtype}")
    unknown = [c for c in frame.columns if c not in RECORD_COLUMNS and not c.startswith(RECORD_OPTIONAL_PREFIXES)]
    if unknown:
        raise UserError(f"{where}: record column {unknown[0]!r} is not in the record schema (bench/types.py)")
