"""The quality view (the paper's Table 1 layout): one row per (source, attack) with white-box
ASR, TV orig/adv, ESNLE orig/adv, LPIPS, ID retention, SSIM and PSNR.

Which samples are averaged depends on the metric mode: ``paper`` takes the successful samples
only (as every official table does); ``clean`` reports all attacked fakes and the successes as
two tables. How they are averaged also follows the mode:

- ``clean``: every metric is a mean per video, then over videos; its 95 % interval is a
  bootstrap over the per-video means (``quality_ci``).
- ``paper`` (the official evaluation): ID retention, ID similarity, SSIM, PSNR and MSE pool the
  frames (one mean over all successful frames; the interval resamples whole videos); TV and
  LPIPS are a mean per video, then over videos; ESNLE is one estimate per video on two
  half-width strips of its successful frames side by side (``q_esnle_file_*``, written at merge
  by ``bench.metrics.file_esnle``), then a mean over videos.

An empty success set gives NaN (rendered "n/a"), never an error.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.ensemble import ENSEMBLE
from bench.metrics.stats import bootstrap_ci
from bench.metrics.unavailable import footnotes

# record column -> table column, in the paper's order
COLUMNS = [
    ("q_tv_orig", "TV orig"), ("q_tv_adv", "TV adv"),
    ("q_esnle_orig", "ESNLE orig"), ("q_esnle_adv", "ESNLE adv"),
    ("q_lpips", "LPIPS"), ("q_id_same", "ID ret. (%)"), ("q_id_similarity", "ID sim."),
    ("q_ssim", "SSIM"), ("q_psnr", "PSNR"),
]


# paper mode: metrics the official evaluation pools over frames rather than averaging per video
POOLED_IN_PAPER = {"q_id_same", "q_id_similarity", "q_ssim", "q_psnr", "q_mse"}
# paper mode: the per-video ESNLE over the successful frames, used instead of the per-frame column
FILE_ESNLE = {"q_esnle_orig": "q_esnle_file_orig", "q_esnle_adv": "q_esnle_file_adv"}
CI_INDEX = ["source", "attack", "metric", "subset"]


def video_mean(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Mean per video of one column (non-finite values dropped), as an array over videos."""
    values = frame[column].astype(float)
    per_video = values[np.isfinite(values)].groupby(frame["video_id"]).mean()
    return per_video.to_numpy()


def file_value(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The one value per video of a per-video column (non-finite values dropped); for the ensemble
    row, whose sets (one per target) each have their own, the mean over its sets."""
    values = frame[column].astype(float)
    kept = np.isfinite(values)
    per_set = values[kept].groupby([frame["video_id"][kept], frame["target"][kept]]).first()
    return per_set.groupby(level=0).mean().to_numpy()


def aggregate(chosen: pd.DataFrame, column: str, paper: bool, n_boot: int) -> tuple[float, float, float, int]:
    """(mean, lo, hi, videos) of one metric over the chosen rows, as the mode aggregates it."""
    scale = 100.0 if column == "q_id_same" else 1.0
    if paper and column in POOLED_IN_PAPER:
        values = chosen[column].astype(float).to_numpy() * scale
        videos = chosen["video_id"][np.isfinite(values)].nunique()
        mean, lo, hi = bootstrap_ci(values, groups=chosen["video_id"].to_numpy(), n_boot=n_boot)
        return mean, lo, hi, int(videos)
    if paper and FILE_ESNLE.get(column) in chosen:
        per_video = file_value(chosen, FILE_ESNLE[column])
    else:
        per_video = video_mean(chosen, column) * scale
    if per_video.size == 0:
        return math.nan, math.nan, math.nan, 0
    mean, lo, hi = bootstrap_ci(per_video, n_boot=n_boot)
    return mean, lo, hi, int(per_video.size)


def quality_rows(records: pd.DataFrame, subset: str, n_boot: int = 1000,
                 paper: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, intervals) over the white-box rows and the ensemble row (its sets, each graded by the
    target it was made for); ``subset`` is 'success' or 'all'; ``paper`` aggregates as the
    official evaluation (module docstring)."""
    white = records[(records["source"] == records["target"]) | (records["source"] == ENSEMBLE)]
    rows, cis = [], []
    for (source, attack), group in white.groupby(["source", "attack"], sort=False):
        eligible = group[group["eligible"]]
        asr = 100 * group["success"].sum() / len(eligible) if len(eligible) else math.nan
        chosen = group[group["success"].astype(bool)] if subset == "success" else group
        row = {"source": source, "attack": attack, "ASR (%)": asr, "n": len(chosen)}
        for column, title in COLUMNS:
            if column not in chosen:
                continue
            mean, lo, hi, videos = aggregate(chosen, column, paper, n_boot)
            row[title] = float(mean)
            if videos:
                cis.append({"source": source, "attack": attack, "metric": title, "subset": subset,
                            "mean": float(mean), "lo": lo, "hi": hi, "videos": videos})
        rows.append(row)
    table = pd.DataFrame(rows).set_index(["source", "attack"]) if rows else pd.DataFrame()
    intervals = pd.DataFrame(cis, columns=[*CI_INDEX, "mean", "lo", "hi", "videos"])
    return table, intervals


def quality_footnotes(records: pd.DataFrame, paper: bool) -> list[str]:
    """The n/a footnotes of the quality table: per metric, how many of the aggregated samples
    (white-box; in paper mode the successful ones) could not be measured, and why."""
    chosen = records[records["source"] == records["target"]]
    if paper:
        chosen = chosen[chosen["success"].astype(bool)]
    columns = {FILE_ESNLE[c] if paper and FILE_ESNLE.get(c) in chosen else c: title for c, title in COLUMNS}
    return footnotes(chosen, columns)


def quality_views(records: pd.DataFrame, config: dict, n_boot: int = 1000) -> dict[str, pd.DataFrame]:
    if not any(c.startswith("q_") for c in records.columns):
        return {}
    mode = config.get("metrics", {}).get("mode", "paper")
    views: dict[str, pd.DataFrame] = {}
    intervals = []
    subsets = ["success"] if mode == "paper" else ["all", "success"]
    for subset in subsets:
        table, ci = quality_rows(records, subset, n_boot=n_boot, paper=mode == "paper")
        views["quality" if mode == "paper" else f"quality_{subset}"] = table
        intervals.append(ci)
    views["quality_ci"] = pd.concat(intervals, ignore_index=True).set_index(CI_INDEX)
    backends = records["q_id_backend"].dropna().unique() if "q_id_backend" in records else []
    if len(backends):  # name the ID backend in the table, as the numbers depend on it
        for key in [k for k in views if k != "quality_ci"]:
            views[key] = views[key].rename(columns={"ID ret. (%)": f"ID ret. (%) [{backends[0]}]"})
    return views
