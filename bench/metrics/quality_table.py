"""The quality view (the paper's Table 1 layout): one row per (source, attack) with white-box
ASR, TV orig/adv, ESNLE orig/adv, LPIPS, ID retention, SSIM and PSNR.

Which samples are averaged depends on the metric mode: ``paper`` takes the successful samples
only (as every official table does); ``clean`` reports all attacked fakes and the successes as
two tables. A mean is taken per video, then over videos (the official averaging), and its 95 %
interval is a bootstrap over the per-video means (``quality_ci``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.metrics.stats import bootstrap_ci

# record column -> table column, in the paper's order
COLUMNS = [
    ("q_tv_orig", "TV orig"), ("q_tv_adv", "TV adv"),
    ("q_esnle_orig", "ESNLE orig"), ("q_esnle_adv", "ESNLE adv"),
    ("q_lpips", "LPIPS"), ("q_id_same", "ID ret. (%)"), ("q_id_similarity", "ID sim."),
    ("q_ssim", "SSIM"), ("q_psnr", "PSNR"),
]


def video_mean(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Mean per video of one column (non-finite values dropped), as an array over videos."""
    values = frame[column].astype(float)
    per_video = values[np.isfinite(values)].groupby(frame["video_id"]).mean()
    return per_video.to_numpy()


def quality_rows(records: pd.DataFrame, subset: str, n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, intervals) over the white-box rows; ``subset`` is 'success' or 'all'."""
    white = records[records["source"] == records["target"]]
    rows, cis = [], []
    for (source, attack), group in white.groupby(["source", "attack"], sort=False):
        eligible = group[group["eligible"]]
        asr = 100 * group["success"].sum() / len(eligible) if len(eligible) else math.nan
        chosen = group[group["success"]] if subset == "success" else group
        row = {"source": source, "attack": attack, "ASR (%)": asr, "n": len(chosen)}
        for column, title in COLUMNS:
            if column not in chosen:
                continue
            per_video = video_mean(chosen, column)
            scale = 100.0 if column == "q_id_same" else 1.0
            if per_video.size == 0:
                row[title] = math.nan
                continue
            mean, lo, hi = bootstrap_ci(per_video * scale, n_boot=n_boot)
            row[title] = float(mean)
            cis.append({"source": source, "attack": attack, "metric": title, "subset": subset,
                        "mean": float(mean), "lo": lo, "hi": hi, "videos": int(per_video.size)})
        rows.append(row)
    table = pd.DataFrame(rows).set_index(["source", "attack"]) if rows else pd.DataFrame()
    # the columns named even when no sample succeeded, so the interval view still indexes
    return table, pd.DataFrame(cis, columns=["source", "attack", "metric", "subset", "mean", "lo", "hi", "videos"])


def quality_views(records: pd.DataFrame, config: dict, n_boot: int = 1000) -> dict[str, pd.DataFrame]:
    if not any(c.startswith("q_") for c in records.columns):
        return {}
    mode = config.get("metrics", {}).get("mode", "paper")
    views: dict[str, pd.DataFrame] = {}
    intervals = []
    subsets = ["success"] if mode == "paper" else ["all", "success"]
    for subset in subsets:
        table, ci = quality_rows(records, subset, n_boot=n_boot)
        views["quality" if mode == "paper" else f"quality_{subset}"] = table
        intervals.append(ci)
    views["quality_ci"] = pd.concat(intervals, ignore_index=True).set_index(["source", "attack", "metric", "subset"])
    backends = records["q_id_backend"].dropna().unique() if "q_id_backend" in records else []
    if len(backends):  # name the ID backend in the table, as the numbers depend on it
        for key in [k for k in views if k != "quality_ci"]:
            views[key] = views[key].rename(columns={"ID ret. (%)": f"ID ret. (%) [{backends[0]}]"})
    return views
