"""The budget-sweep view: transfer ASR against image quality, per source detector.

Rendered when a run holds a sweep (entries labelled ``family@option=value``, bench/sweep.py):

- the ``sweep`` table, one row per (source, attack): the mean transfer ASR over the targets
  other than the source, and the mean quality of the adversarial images over every attacked
  fake, each with its 95 % percentile-bootstrap interval (resampling videos when the samples
  have video ids, else samples, as the ASR tables do);
- ``figures/sweep_<source>.png``: one curve per swept family, its points ordered by the swept
  value and annotated with it; attacks that are not swept are single points.

Quality is LPIPS, or SSIM when the run has no LPIPS values (LPIPS n/a). LPIPS compares with the
reference the metric mode chose (bench/metrics/measure.py); SSIM always with the original.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.metrics.stats import bootstrap_ci, bootstrap_mean_ratio_ci, video_groups
from bench.store import safe_part, save_png
from bench.sweep import parse_sweep_label

QUALITY = (("q_lpips", "LPIPS"), ("q_ssim", "SSIM"))
CLOSER = {"LPIPS": "lower = closer to the original", "SSIM": "higher = closer to the original"}


def quality_metric(records: pd.DataFrame) -> tuple[str, str] | None:
    """(record column, display name) of the first quality metric the run has values for."""
    for column, name in QUALITY:
        if column in records and np.isfinite(records[column].astype(float)).any():
            return column, name
    return None


def transfer_asr(rows: pd.DataFrame, source: str, n_boot: int) -> tuple[float, float, float]:
    """Mean transfer ASR (%) of one (source, attack) over the other targets, with its interval."""
    off = rows[rows["target"] != source]
    if off.empty:
        return float("nan"), float("nan"), float("nan")
    success = off.pivot(index="sample_index", columns="target", values="success").astype(float)
    eligible = off.pivot(index="sample_index", columns="target", values="eligible").astype(float)
    videos = off.drop_duplicates("sample_index").set_index("sample_index").loc[success.index]
    mean, lo, hi = bootstrap_mean_ratio_ci(success.to_numpy(), eligible.to_numpy(), groups=video_groups(videos),
                                           n_boot=n_boot)
    return 100 * mean, 100 * lo, 100 * hi


def sweep_table(records: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame | None:
    """The ``sweep`` table (module docstring); None when the run holds no sweep."""
    labels = list(dict.fromkeys(records["attack"]))
    if not any(parse_sweep_label(label) for label in labels):
        return None
    metric = quality_metric(records)
    name = metric[1] if metric else "quality"
    rows = []
    for source in dict.fromkeys(records["source"]):
        for label in labels:
            cell = records[(records["source"] == source) & (records["attack"] == label)]
            if cell.empty:
                continue
            family, option, value = parse_sweep_label(label) or (label, "", "")
            white = cell[cell["target"] == source]
            if metric:
                q_mean, q_lo, q_hi = bootstrap_ci(white[metric[0]].astype(float).to_numpy(), groups=video_groups(white),
                                                  n_boot=n_boot)
            else:
                q_mean = q_lo = q_hi = float("nan")
            asr, lo, hi = transfer_asr(cell, source, n_boot)
            rows.append({"source": source, "attack": label, "family": family, "option": option, "value": value,
                         "transfer ASR": asr, "transfer ASR lo": lo, "transfer ASR hi": hi,
                         name: q_mean, f"{name} lo": q_lo, f"{name} hi": q_hi, "n": len(white)})
    table = pd.DataFrame(rows)
    order = {family: i for i, family in enumerate(dict.fromkeys(table["family"]))}
    table["_family"] = table["family"].map(order)
    table["_value"] = [_number(v) for v in table["value"]]
    table = table.sort_values(["_family", "_value"], kind="stable").drop(columns=["_family", "_value"])
    source_order = {s: i for i, s in enumerate(dict.fromkeys(records["source"]))}
    table = table.sort_values("source", key=lambda s: s.map(source_order), kind="stable")
    return table.set_index(["source", "attack"])


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # a non-numeric sweep (noise: [random, const]) keeps the matrix's order


def sweep_views(records: pd.DataFrame, n_boot: int = 1000) -> dict[str, pd.DataFrame]:
    table = sweep_table(records, n_boot=n_boot)
    return {} if table is None else {"sweep": table}


def sweep_figures(table: pd.DataFrame, folder: Path) -> list[Path]:
    """``sweep_<source>.png`` per source of the ``sweep`` table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality = next(name for name in (*(n for _, n in QUALITY), "quality") if name in table)
    written = []
    for source, rows in table.groupby(level="source", sort=False):
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        for shade, (family, points) in enumerate(rows.groupby("family", sort=False)):
            points = points[np.isfinite(points[quality]) & np.isfinite(points["transfer ASR"])]
            if points.empty:
                continue
            x, y = points[quality].to_numpy(float), points["transfer ASR"].to_numpy(float)
            xerr = _error_bars(x, points[f"{quality} lo"], points[f"{quality} hi"])
            yerr = _error_bars(y, points["transfer ASR lo"], points["transfer ASR hi"])
            swept = (points["option"] != "").any()
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, marker="o", capsize=3, linestyle="-" if swept else "none",
                        label=f"{family} ({points['option'].iloc[0]})" if swept else family)
            for xi, yi, value in zip(x, y, points["value"], strict=True):
                if value:
                    # each family's labels at its own offset, so crowded points stay readable
                    ax.annotate(value, (xi, yi), textcoords="offset points", xytext=(4, 4 - 9 * (shade % 3)),
                                fontsize=7, color=f"C{shade}")
        ax.set_xlabel(f"{quality}, mean over attacked fakes ({CLOSER.get(quality, '')})")
        ax.set_ylabel("transfer ASR (%), mean over other targets")
        ax.set_title(f"Budget sweep, source {source} (95 % bootstrap intervals)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(save_png(fig, folder / f"sweep_{safe_part(source)}.png"))
    return written


def _error_bars(center: np.ndarray, lo: pd.Series, hi: pd.Series) -> np.ndarray:
    """matplotlib's (2, n) distances below and above; an unknown bound draws no bar."""
    below = np.nan_to_num(center - lo.to_numpy(float), nan=0.0)
    above = np.nan_to_num(hi.to_numpy(float) - center, nan=0.0)
    return np.stack([np.clip(below, 0, None), np.clip(above, 0, None)])
