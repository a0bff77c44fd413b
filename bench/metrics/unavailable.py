"""No silent numbers: a metric that cannot be computed is NaN plus a reason code, never 0.000.

Per sample, a metric ``q_x`` that could not be computed stores NaN in ``q_x`` and a reason code
in the companion column ``q_x_reason`` ("" where the value is real). Tables print such a cell
as ``n/a`` and add a footnote naming each reason and how many samples it covers, e.g.
``ESNLE adv: n/a for 12 samples (esnle_too_few_patches: image too small ...)``.

Reason codes are short stable strings (they are stored in records); ``REASONS`` maps each to the
sentence a footnote prints. New metrics add their codes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from bench.metrics.quality import esnle

REASON_SUFFIX = "_reason"
NA = "n/a"

REASONS: dict[str, str] = {
    "esnle_too_few_patches": "image too small: fewer 8x8 patches than the patch covariance has dimensions "
                             "(d = 64 C), so its eigenvalues are not a noise estimate",
    "lpips_no_trunk": "LPIPS AlexNet trunk (alexnet-owt-7be5be79.pth) not in the torch hub cache",
    "id_no_face": "no face detected for the identity embedding",
    "detection_no_reals": "no real samples: AUC, AP, EER and TPR need both classes",
    "detection_no_fakes": "no fake samples: AUC, AP, EER and TPR need both classes",
    "no_samples": "no samples",
    "not_recorded": "the attack does not record this value",
}


def reason_text(code: str) -> str:
    """The footnote sentence for ``code`` (the code itself when it is not in ``REASONS``)."""
    return REASONS.get(code, code)


def with_reason(values: np.ndarray | torch.Tensor | Sequence[float], ok: np.ndarray | torch.Tensor | Sequence[bool],
                reason: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ``(values, reasons)``: NaN and ``reason`` where ``ok`` is False, the value and ""
    elsewhere. Store both, as ``q_x`` and ``q_x_reason``."""
    values = _numpy(values).astype(np.float64).reshape(-1)
    ok = _numpy(ok).astype(bool).reshape(-1)
    if ok.shape != values.shape:
        raise ValueError(f"{ok.size} ok flags for {values.size} values")
    return np.where(ok, values, np.nan), np.where(ok, "", reason).astype(object)


# -- ESNLE ---------------------------------------------------------------------------------------

def esnle_patch_count(height: int, width: int, patch: int = 8, stride: int = 3) -> int:
    """How many ``patch`` x ``patch`` patches at ``stride`` an image of this size has."""
    if height < patch or width < patch:
        return 0
    return ((height - patch) // stride + 1) * ((width - patch) // stride + 1)


def esnle_computable(height: int, width: int, channels: int = 3, patch: int = 8, stride: int = 3) -> bool:
    """Whether ESNLE's patch covariance can have full rank: more patches than its dimension
    ``d = patch^2 * channels``. With fewer, at least ``d - n + 1`` eigenvalues are exactly 0 (up
    to round-off), the mean-equals-median search stops among them, and ``esnle`` returns ~0
    (e.g. 0.000 or 4e-9 on a 32 px image, 81 patches for d = 192)."""
    return esnle_patch_count(height, width, patch, stride) > patch * patch * channels


def esnle_or_nan(x01: torch.Tensor, patch: int = 8, stride: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """ESNLE per image (0-255 units) as ``(values, reasons)``: NaN with ``esnle_too_few_patches``
    where the image is too small for the estimator (see :func:`esnle_computable`); otherwise
    ``bench.metrics.quality.esnle`` unchanged."""
    b, c, h, w = x01.shape
    if not esnle_computable(h, w, c, patch, stride):
        return with_reason(np.zeros(b), np.zeros(b, dtype=bool), "esnle_too_few_patches")
    return with_reason(esnle(x01, patch=patch, stride=stride), np.ones(b, dtype=bool), "")


def esnle_half_strips_or_nan(x01: torch.Tensor, patch: int = 8, stride: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The paper-mode per-frame variant (mean ESNLE of the left and right half-width strips) with
    the same guard, applied to the strip size ``H x W/2``."""
    b, c, h, w = x01.shape
    half = w // 2
    if not esnle_computable(h, half, c, patch, stride):
        return with_reason(np.zeros(b), np.zeros(b, dtype=bool), "esnle_too_few_patches")
    sigma = esnle(torch.cat([x01[..., :half], x01[..., half:2 * half]]), patch=patch, stride=stride)
    return with_reason((sigma[:b] + sigma[b:]) / 2, np.ones(b, dtype=bool), "")


# -- tables --------------------------------------------------------------------------------------

def reason_counts(reasons: Iterable[str]) -> dict[str, int]:
    """How many samples carry each non-empty reason code, most frequent first."""
    counts = pd.Series([r for r in reasons if isinstance(r, str) and r]).value_counts()
    return {str(code): int(n) for code, n in counts.items()}


def footnotes(frame: pd.DataFrame, columns: dict[str, str]) -> list[str]:
    """Footnote lines for the n/a cells of a table built from ``frame``'s per-sample columns.

    ``columns`` maps a metric column to its table label. For every metric that has NaN samples,
    one line per reason: ``"<label>: n/a for <count> of <n> samples (<code>: <sentence>)"``;
    NaN samples without a reason column are counted as ``unknown``.
    """
    lines = []
    for column, label in columns.items():
        if column not in frame:
            continue
        missing = frame[column].isna()
        if not missing.any():
            continue
        reasons = frame.loc[missing, column + REASON_SUFFIX] if column + REASON_SUFFIX in frame else None
        codes = ["unknown" if not isinstance(r, str) or not r else r
                 for r in (reasons if reasons is not None else ["unknown"] * int(missing.sum()))]
        for code, count in reason_counts(codes).items():
            lines.append(f"{label}: n/a for {count} of {len(frame)} samples ({code}: {reason_text(code)})")
    return lines


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
