"""Attack success rate, per frame, with the official rule (REFERENCE.md section 5).

    success = p_fake(orig) > .5  and  p_fake(inversion) > .5  and  p_fake(adv) < .5
    ASR     = #success / #(p_fake(orig) > .5)                 (the paper's denominator)
    ASR_inv = #success / #(p_fake(inversion) > .5)            (the official console's)

For pixel attacks, and for the inversion-only control, the inversion is the original, so the
middle condition reduces to the first. Transfer ASR is the same rule with the target detector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics.stats import bootstrap_ratio_ci, video_groups

THRESHOLD = 0.5


def success_flags(p_clean, p_inversion, p_adv, threshold: float = THRESHOLD):
    """Per-sample (eligible, inversion_fake, success) booleans."""
    p_clean, p_inversion, p_adv = (np.asarray(a, dtype=np.float64) for a in (p_clean, p_inversion, p_adv))
    eligible = p_clean > threshold
    inversion_fake = p_inversion > threshold
    success = eligible & inversion_fake & (p_adv < threshold)
    return eligible, inversion_fake, success


def asr_summary(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """ASR of one (source, attack, target) group of records, both denominators, with a 95 %
    bootstrap interval that resamples videos when video ids exist (else samples)."""
    success = frame["success"].to_numpy(dtype=np.float64)
    eligible = frame["eligible"].to_numpy(dtype=np.float64)
    inversion_fake = frame["inversion_fake"].to_numpy(dtype=np.float64)
    asr, lo, hi = bootstrap_ratio_ci(success, eligible, groups=video_groups(frame), n_boot=n_boot, seed=seed)
    asr_inv = success.sum() / inversion_fake.sum() if inversion_fake.sum() else float("nan")
    return {
        "asr": asr,
        "asr_lo": lo,
        "asr_hi": hi,
        "asr_inv_denominator": float(asr_inv),
        "n": len(frame),
        "n_eligible": int(eligible.sum()),
        "n_inversion_fake": int(inversion_fake.sum()),
        "n_success": int(success.sum()),
    }


def asr_table(records: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (source, attack, target) with the ASR summary."""
    rows = []
    for (source, attack, target), group in records.groupby(["source", "attack", "target"], sort=False):
        rows.append({"source": source, "attack": attack, "target": target,
                     **asr_summary(group, n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)
