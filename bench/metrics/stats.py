"""Percentile-bootstrap confidence intervals for means and ratios (e.g. ASR).

Frames of one video are not independent, so when ``groups`` (video ids) are given the bootstrap
resamples whole groups (a cluster bootstrap) and recomputes the pooled statistic over all
samples of the drawn groups; otherwise it resamples samples. The point estimate is always the
plain statistic on the data (the pooled mean, or sum(numer) / sum(denom)); grouping only changes
the width of the interval.

Everything is vectorised with numpy: a resample is a row of unit indices, and the statistic of
each row is a sum of per-unit totals. Rows are processed in chunks so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Largest number of (resample, unit) index pairs held in memory at once (~80 MB of int64).
_CHUNK_CELLS = 10_000_000


def bootstrap_ci(values: Sequence[float] | np.ndarray, groups: Sequence | np.ndarray | None = None,
                 n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean of ``values`` and its (1 - alpha) percentile-bootstrap interval: ``(mean, lo, hi)``.

    Non-finite values (a metric that was n/a for that sample) are dropped with their group.
    Returns NaNs when nothing is left.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return bootstrap_ratio_ci(values, np.ones_like(values), groups=groups, n_boot=n_boot, seed=seed,
                              alpha=alpha)


def bootstrap_ratio_ci(numer: Sequence[float] | np.ndarray, denom: Sequence[float] | np.ndarray,
                       groups: Sequence | np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                       alpha: float = 0.05) -> tuple[float, float, float]:
    """``sum(numer) / sum(denom)`` and its percentile-bootstrap interval: ``(ratio, lo, hi)``.

    For ASR pass per-sample ``numer = success`` and ``denom = eligible`` (p_fake(orig) > 0.5), both
    0/1; samples that are not eligible contribute 0/0 and still count as drawn units, which is the
    right resampling of a ratio estimator. Resamples whose denominator is 0 are ignored when
    taking percentiles. Samples where either entry is non-finite are dropped.
    """
    numer = np.asarray(numer, dtype=np.float64).reshape(-1)
    denom = np.asarray(denom, dtype=np.float64).reshape(-1)
    if numer.shape != denom.shape:
        raise ValueError(f"numer and denom differ in length: {numer.size} vs {denom.size}")
    keep = np.isfinite(numer) & np.isfinite(denom)
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        if groups.shape != numer.shape:
            raise ValueError(f"groups has {groups.size} entries for {numer.size} values")
        groups = groups[keep]
    numer, denom = numer[keep], denom[keep]
    nan = float("nan")
    if numer.size == 0 or denom.sum() == 0:
        return nan, nan, nan
    estimate = float(numer.sum() / denom.sum())

    # Per-unit totals: one unit per sample, or one per group.
    if groups is None:
        unit_numer, unit_denom = numer, denom
    else:
        _, inverse = np.unique(groups, return_inverse=True)
        unit_numer = np.bincount(inverse, weights=numer)
        unit_denom = np.bincount(inverse, weights=denom)

    boot = _resampled_ratios(unit_numer, unit_denom, n_boot, seed)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return estimate, nan, nan
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return estimate, float(lo), float(hi)


def _resampled_ratios(unit_numer: np.ndarray, unit_denom: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Ratio of totals for ``n_boot`` resamples (with replacement) of the units."""
    rng = np.random.default_rng(seed)
    n_units = unit_numer.size
    rows_per_chunk = max(1, _CHUNK_CELLS // max(n_units, 1))
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows_per_chunk):
        stop = min(n_boot, start + rows_per_chunk)
        idx = rng.integers(0, n_units, size=(stop - start, n_units))
        num = unit_numer[idx].sum(axis=1)
        den = unit_denom[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def bootstrap_mean_ratio_ci(numer: np.ndarray, denom: np.ndarray, groups: Sequence | np.ndarray | None = None,
                            n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """The mean over the k columns of ``sum(numer[:, j]) / sum(denom[:, j])`` (e.g. transfer ASR
    averaged over k targets, each column one target's 0/1 success and eligibility on the same n
    samples) and its percentile-bootstrap interval: ``(mean, lo, hi)``.

    A resample draws rows (or groups), the same ones for every column, since the columns measure
    the same samples. Columns whose denominator is 0 (in the data or in a resample) are left out
    of that mean. Rows with a non-finite entry are dropped."""
    numer = np.asarray(numer, dtype=np.float64)
    denom = np.asarray(denom, dtype=np.float64)
    if numer.ndim != 2 or numer.shape != denom.shape:
        raise ValueError(f"numer and denom must be two (n, k) arrays, got {numer.shape} and {denom.shape}")
    keep = np.isfinite(numer).all(axis=1) & np.isfinite(denom).all(axis=1)
    numer, denom = numer[keep], denom[keep]
    nan = float("nan")
    totals = denom.sum(axis=0)
    if numer.shape[0] == 0 or not (totals > 0).any():
        return nan, nan, nan
    estimate = float(np.mean(numer.sum(axis=0)[totals > 0] / totals[totals > 0]))
    if groups is None:
        unit_numer, unit_denom = numer, denom
    else:
        _, inverse = np.unique(np.asarray(groups).reshape(-1)[keep], return_inverse=True)
        unit_numer = np.stack([np.bincount(inverse, weights=col) for col in numer.T], axis=1)
        unit_denom = np.stack([np.bincount(inverse, weights=col) for col in denom.T], axis=1)
    # one seed, one unit count: every column sees the same resampled units
    boot = np.stack([_resampled_ratios(unit_numer[:, j], unit_denom[:, j], n_boot, seed)
                     for j in range(unit_numer.shape[1])], axis=1)
    finite = np.isfinite(boot)
    counts = finite.sum(axis=1)
    means = np.where(finite, boot, 0.0).sum(axis=1)[counts > 0] / counts[counts > 0]
    if means.size == 0:
        return estimate, nan, nan
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return estimate, float(lo), float(hi)


def video_groups(frame, column: str | None = "video_id") -> np.ndarray | None:
    """A records frame's video ids as bootstrap groups (whole videos resampled), or None when
    there is no such column or any row lacks one (then samples are resampled)."""
    if column is None or column not in frame:
        return None
    videos = frame[column].to_numpy()
    return videos if (pd.notna(videos) & (videos.astype(str) != "")).all() else None
