"""Detector performance as the field reports it: AUC, AP, EER, accuracy, TPR at 1 % FPR.

Labels are 0 = real, 1 = fake; the score is ``p_fake`` (higher = more fake). Conventions:

- **ROC** as scikit-learn's ``roc_curve(drop_intermediate=False)`` (and DeepfakeBench, which
  calls it): one operating point per distinct score ``t``, predicting *fake* for ``p >= t``, plus
  the point (0, 0) for ``t = +inf``. Tied scores move both rates at once (a diagonal segment).
- **AUC** the trapezoidal area under that curve (= Mann-Whitney: P(fake > real) + P(tie) / 2),
  equal to ``sklearn.metrics.roc_auc_score``.
- **AP** ``sum_k (R_k - R_{k-1}) P_k`` over the same thresholds, descending (no interpolation),
  equal to ``sklearn.metrics.average_precision_score``.
- **EER** where the ROC curve, joined linearly between its points, crosses FPR = FNR
  (FNR = 1 - TPR). DeepfakeBench instead takes the FPR of the ROC point nearest to the crossing
  (``fpr[nanargmin(|fnr - fpr|)]``), which can be off by a whole step on small sets (scores
  real {0.1, 0.7}, fake {0.7, 0.9}: interpolated 0.25, nearest point 0.0).
- **TPR at 1 % FPR** the largest TPR of an operating point whose FPR is at most 0.01 (an
  achievable threshold, no interpolation). With fewer than 100 reals that means FPR = 0.
- **Accuracy at 0.5** predicts fake for ``p_fake > 0.5`` (as the ASR rule's "detected").

Intervals are 95 % percentile bootstraps; with ``groups`` (video ids) whole videos are resampled
(a cluster bootstrap, as ``bench.metrics.stats``). Resamples that lack one class give no ranking
metric and are skipped. One class only gives NaN ranking metrics with a reason code from
``bench.metrics.unavailable`` instead of raising.

Video level: a video's score is the mean ``p_fake`` of its frames, its label the label all its
frames share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.metrics.asr import THRESHOLD, success_flags
from bench.metrics.stats import bootstrap_ratio_ci, video_groups

RANKING = ("auc", "ap", "eer", "tpr_at_1fpr")
METRICS = (*RANKING, "acc")
TARGET_FPR = 0.01


@dataclass(frozen=True)
class Roc:
    """Operating points, thresholds descending: ``fpr[i], tpr[i]`` predict fake for ``p >= thresholds[i]``;
    ``tps``/``fps`` are the counts behind them (index 0 is the (0, 0) point at +inf)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    tps: np.ndarray
    fps: np.ndarray


def roc(labels: np.ndarray, scores: np.ndarray) -> Roc:
    """The ROC curve in scikit-learn's convention (needs both classes)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each distinct score
    tps = np.r_[0, np.cumsum(y)[last_of_each]]
    fps = np.r_[0, last_of_each + 1 - tps[1:]]
    return Roc(fps / fps[-1], tps / tps[-1], np.r_[np.inf, s[last_of_each]], tps, fps)


def auc_from(curve: Roc) -> float:
    return float(np.sum(np.diff(curve.fpr) * (curve.tpr[1:] + curve.tpr[:-1]) / 2))  # trapezoids


def ap_from(curve: Roc) -> float:
    precision = curve.tps[1:] / (curve.tps[1:] + curve.fps[1:])
    return float(np.sum(np.diff(curve.tpr) * precision))


def eer_from(curve: Roc) -> float:
    gap = curve.fpr - (1 - curve.tpr)  # rises from -1 at (0,0) to +1 at (1,1)
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return float(curve.fpr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(curve.fpr[i - 1] + t * (curve.fpr[i] - curve.fpr[i - 1]))


def tpr_at_fpr_from(curve: Roc, target: float = TARGET_FPR) -> float:
    return float(curve.tpr[curve.fpr <= target + 1e-12].max())


def point_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The five metrics on one set (NaN ranking metrics when a class is missing)."""
    nan = float("nan")
    out = {"acc": float(np.mean((scores > THRESHOLD) == (labels == 1))) if labels.size else nan}
    if labels.size == 0 or labels.min() == labels.max():
        return {**dict.fromkeys(RANKING, nan), **out}
    curve = roc(labels, scores)
    return {"auc": auc_from(curve), "ap": ap_from(curve), "eer": eer_from(curve),
            "tpr_at_1fpr": tpr_at_fpr_from(curve), **out}


def detection_metrics(labels: Sequence[int] | np.ndarray, p_fake: Sequence[float] | np.ndarray,
                      groups: Sequence | np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> dict[str, float | int | str]:
    """Frame-level metrics with bootstrap intervals.

    Returns ``n_real, n_fake, n_dropped`` (non-finite scores are dropped), each metric of
    ``METRICS`` with ``<metric>_lo`` / ``<metric>_hi``, and ``reason`` ("" or a reason code from
    ``bench.metrics.unavailable`` when the ranking metrics are NaN).
    """
    labels, scores, groups, n_dropped = _finite_only(labels, p_fake, groups)
    out: dict[str, float | int | str] = {"n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
                                         "n_dropped": n_dropped}
    out.update(point_metrics(labels, scores))
    out.update(_bootstrap(labels, scores, groups, n_boot, seed, alpha))
    out["reason"] = _reason(out["n_real"], out["n_fake"])
    return out


def video_scores(labels: Sequence[int] | np.ndarray, p_fake: Sequence[float] | np.ndarray,
                 videos: Sequence | np.ndarray) -> pd.DataFrame:
    """One row per video: ``video_id, label, p_fake`` (mean over its frames), ``n_frames``.
    A video whose frames disagree on the label is an error in the data."""
    # numpy, not a pandas groupby: the under-attack views call this for hundreds of cells
    videos, labels = np.asarray(videos), np.asarray(labels, dtype=np.int64)
    scores = np.asarray(p_fake, dtype=np.float64)
    keep = np.isfinite(scores)
    ids, inverse = np.unique(videos[keep], return_inverse=True)  # sorted video ids
    n_frames = np.bincount(inverse, minlength=len(ids))
    fake_frames = np.bincount(inverse, weights=labels[keep], minlength=len(ids))
    mixed = ids[(fake_frames > 0) & (fake_frames < n_frames)]
    if len(mixed):
        raise ValueError(f"videos with both real and fake frames: {', '.join(map(str, mixed[:5]))}")
    return pd.DataFrame({"video_id": ids, "label": (fake_frames > 0).astype(np.int64),
                         "p_fake": np.bincount(inverse, weights=scores[keep], minlength=len(ids)) / n_frames,
                         "n_frames": n_frames.astype(np.int64)})


def video_detection_metrics(labels, p_fake, videos, n_boot: int = 1000, seed: int = 0,
                            alpha: float = 0.05) -> dict[str, float | int | str]:
    """:func:`detection_metrics` on per-video mean scores (``n_real``/``n_fake`` count videos)."""
    per_video = video_scores(labels, p_fake, videos)
    return detection_metrics(per_video["label"], per_video["p_fake"], n_boot=n_boot, seed=seed, alpha=alpha)


def under_attack_metrics(p_real: Sequence[float] | np.ndarray, p_adv: Sequence[float] | np.ndarray,
                         real_videos: Sequence | np.ndarray | None = None,
                         adv_videos: Sequence | np.ndarray | None = None, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, float | int | str]:
    """The target's metrics on clean reals vs adversarial fakes, keys prefixed ``frame_`` and,
    when both video id lists are given, ``video_`` (real and fake ids are kept apart)."""
    labels = np.r_[np.zeros(len(p_real), dtype=np.int64), np.ones(len(p_adv), dtype=np.int64)]
    scores = np.r_[np.asarray(p_real, dtype=np.float64), np.asarray(p_adv, dtype=np.float64)]
    have_videos = real_videos is not None and adv_videos is not None
    videos = (np.r_[[f"real/{v}" for v in real_videos], [f"fake/{v}" for v in adv_videos]]
              if have_videos else None)
    out = {f"frame_{k}": v for k, v in detection_metrics(labels, scores, groups=videos, n_boot=n_boot,
                                                         seed=seed).items()}
    if have_videos:
        out.update({f"video_{k}": v for k, v in video_detection_metrics(labels, scores, videos, n_boot=n_boot,
                                                                        seed=seed).items()})
    return out


def detector_table(scores: pd.DataFrame, by: Sequence[str] = ("target",), video_col: str | None = "video_id",
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per ``by`` group of a scores frame with columns ``label`` and ``p_fake`` (and
    ``video_col`` when the dataset knows videos): frame-level metrics, and ``video_``-prefixed
    video-level metrics when ``video_col`` is present and non-empty for every row."""
    rows = []
    for key, group in scores.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        videos = video_groups(group, video_col)
        row = dict(zip(by, key))
        row.update(detection_metrics(group["label"], group["p_fake"], groups=videos, n_boot=n_boot, seed=seed))
        if videos is not None:
            row.update({f"video_{k}": v for k, v in video_detection_metrics(
                group["label"], group["p_fake"], videos, n_boot=n_boot, seed=seed).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def asr_denominators(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                     adv_column: str = "p_fake_adv") -> dict[str, float | int]:
    """ASR of one (source, attack, target) cell over both denominators, same success rule
    (``bench.metrics.asr``: the target detected the original and the inversion, and calls the
    adversarial image real):

    - ``asr_detected`` = #success / #(fakes the target detected, p_fake(orig) > 0.5) — the paper's;
    - ``asr_all``      = #success / #(all attacked fakes).

    Reads ``p_fake_clean``, ``p_fake_inversion`` and ``adv_column`` when present (``adv_column``
    names e.g. the score after a post-processing), else the stored ``eligible`` / ``success``
    flags. Intervals resample videos when every row has a ``video_id``.
    """
    if {"p_fake_clean", "p_fake_inversion", adv_column} <= set(frame.columns):
        eligible, _, success = success_flags(frame["p_fake_clean"], frame["p_fake_inversion"], frame[adv_column])
    else:
        eligible, success = frame["eligible"].to_numpy(bool), frame["success"].to_numpy(bool)
    groups = video_groups(frame)
    success, eligible = success.astype(np.float64), eligible.astype(np.float64)
    detected = bootstrap_ratio_ci(success, eligible, groups=groups, n_boot=n_boot, seed=seed)
    attacked = bootstrap_ratio_ci(success, np.ones_like(success), groups=groups, n_boot=n_boot, seed=seed)
    return {"asr_detected": detected[0], "asr_detected_lo": detected[1], "asr_detected_hi": detected[2],
            "asr_all": attacked[0], "asr_all_lo": attacked[1], "asr_all_hi": attacked[2],
            "n_attacked": int(success.size), "n_detected": int(eligible.sum()), "n_success": int(success.sum())}


def under_attack_table(records: pd.DataFrame, real_scores: pd.DataFrame, adv_column: str = "p_fake_adv",
                       n_boot: int = 1000, seed: int = 0, auc_boot: int | None = None) -> pd.DataFrame:
    """One row per (source, attack, target) cell of ``records``: the target's AUC (and the other
    metrics) on its clean reals vs the cell's adversarial fakes, frame and video level, beside
    both ASR denominators. ``real_scores`` holds ``target``, ``p_fake`` (and ``video_id``) of
    the reals; ``adv_column`` picks the adversarial score (e.g. after a post-processing, with
    the reals' ``p_fake`` post-processed the same way). ``auc_boot``: resamples for the AUC-side
    intervals (default ``n_boot``; 0 = point values, much cheaper over many cells)."""
    auc_boot = n_boot if auc_boot is None else auc_boot
    rows = []
    for (source, attack, target), cell in records.groupby(["source", "attack", "target"], sort=False):
        reals = real_scores[real_scores["target"] == target]
        real_videos = video_groups(reals)
        adv_videos = video_groups(cell)
        both = real_videos is not None and adv_videos is not None
        row = {"source": source, "attack": attack, "target": target}
        row.update(under_attack_metrics(reals["p_fake"], cell[adv_column], real_videos if both else None,
                                        adv_videos if both else None, n_boot=auc_boot, seed=seed))
        row.update(asr_denominators(cell, n_boot=n_boot, seed=seed, adv_column=adv_column))
        rows.append(row)
    return pd.DataFrame(rows)


# -- helpers -------------------------------------------------------------------------------------

def _finite_only(labels, p_fake, groups):
    """Validated arrays without the samples whose score is not finite, and how many were dropped."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(p_fake, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels for {scores.size} scores")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    keep = np.isfinite(scores)
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        if groups.shape != scores.shape:
            raise ValueError(f"{groups.size} group ids for {scores.size} scores")
        groups = groups[keep]
    return labels[keep], scores[keep], groups, int((~keep).sum())


def _reason(n_real: int, n_fake: int) -> str:
    if n_real + n_fake == 0:
        return "no_samples"
    if n_real == 0:
        return "detection_no_reals"
    if n_fake == 0:
        return "detection_no_fakes"
    return ""


def _bootstrap(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int,
               alpha: float) -> dict[str, float]:
    """Percentile intervals of every metric; resamples units (samples, or whole groups)."""
    nan = float("nan")
    empty = {f"{m}_{end}": nan for m in METRICS for end in ("lo", "hi")}
    if labels.size == 0 or n_boot <= 0:
        return empty
    if groups is None:
        members = [np.array([i]) for i in range(labels.size)]
    else:
        _, inverse = np.unique(groups, return_inverse=True)
        order = np.argsort(inverse, kind="mergesort")
        members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(n_boot):
        picked = rng.integers(0, len(members), size=len(members))
        idx = np.concatenate([members[u] for u in picked]) if groups is not None else picked
        for m, v in point_metrics(labels[idx], scores[idx]).items():
            draws[m].append(v)
    out = {}
    for m, values in draws.items():
        values = np.asarray(values)
        values = values[np.isfinite(values)]
        lo, hi = (np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if values.size else (nan, nan))
        out[f"{m}_lo"], out[f"{m}_hi"] = float(lo), float(hi)
    return out
