"""The views a deepfake-detection reader compares with (issue #16), from stored scores and records:

- ``detectors``: each target's clean performance on the evaluation set (reals and fakes as the
  dataset gives them): AUC, AP, EER, accuracy at 0.5 and TPR at 1 % FPR, in %, with 95 %
  bootstrap intervals, at frame level and, where the dataset knows videos, at video level
  (mean p_fake over a video's frames; intervals resample whole videos).
- ``auc_under_attack``: per (attack, source) the target's frame AUC on its clean reals vs the
  cell's adversarial fakes, with a first ``clean`` row (reals vs the unattacked fakes).
- ``under_attack``: the long form, one row per (source, attack, target) cell: frame and video
  AUC under attack beside the transfer ASR over both denominators, named in the header.
- per post-processing ``op``: ``postprocess_<op>`` (white-box and transfer ASR before and after
  ``op``, per attack) and ``under_attack_<op>`` (the long form with both reals and adversarial
  fakes post-processed). ASR after ``op`` keeps the clean eligibility (the target detected the
  unprocessed fake) and asks whether the *processed* adversarial image is called real.

Intervals of the AUC under attack are left out (point values): hundreds of cells times a
bootstrap of the ROC would cost minutes per render; the ASR intervals are there.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.metrics.detection import METRICS, detector_table, under_attack_table
from bench.metrics.unavailable import reason_text

# metric key -> table column
LABELS = {"auc": "AUC", "ap": "AP", "eer": "EER", "acc": "Acc@0.5", "tpr_at_1fpr": "TPR@1%FPR"}
ASR_DETECTED = "ASR (%) of detected fakes"
ASR_ALL = "ASR (%) of all attacked fakes"


def detection_views(records: pd.DataFrame, scores: pd.DataFrame | None, ops: list[str],
                    n_boot: int) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, list[str]]]:
    """(tables, titles, footnotes) of the detection views; nothing when the run has no stored
    clean scores (merged before they existed)."""
    if scores is None or scores.empty:
        return {}, {}, {}
    tables: dict[str, pd.DataFrame] = {}
    titles: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    tables["detectors"], notes["detectors"] = detector_performance(scores, n_boot)
    titles["detectors"] = "Detectors on the clean evaluation set (%, 95 % bootstrap intervals)"
    reals = scores[scores["label"] == 0]
    long = under_attack_long(records, reals, "p_fake_adv", "p_fake", n_boot)
    tables["auc_under_attack"] = auc_matrix(long, tables["detectors"])
    titles["auc_under_attack"] = "Frame AUC (%) of each target: clean reals vs adversarial fakes"
    tables["under_attack"] = long.set_index(["source", "attack", "target"])
    titles["under_attack"] = "Under attack, per cell: AUC on reals vs adversarial fakes, ASR over both denominators"
    for op in ops:
        column = f"p_fake_adv_post_{op}"
        if column not in records or f"p_fake_post_{op}" not in reals:
            continue
        post = under_attack_long(records, reals, column, f"p_fake_post_{op}", n_boot)
        tables[f"postprocess_{op}"] = asr_before_after(long, post, op)
        titles[f"postprocess_{op}"] = f"ASR (%) after {op} (the stored adversarial images re-encoded, re-scored)"
        tables[f"under_attack_{op}"] = post.set_index(["source", "attack", "target"])
        titles[f"under_attack_{op}"] = f"Under attack after {op}: reals and adversarial fakes both {op}"
    return tables, titles, notes


def detector_performance(scores: pd.DataFrame, n_boot: int) -> tuple[pd.DataFrame, list[str]]:
    """One row per (target, level): counts, then each metric in % with its interval."""
    clean = scores[["target", "label", "p_fake", "video_id"]].copy()
    table = detector_table(clean, by=("target",), n_boot=n_boot)
    rows, notes = [], []
    for _, row in table.iterrows():
        rows.append(_level_row(row, "frame", ""))
        if "video_auc" in row:
            rows.append(_level_row(row, "video", "video_"))
    frame = pd.DataFrame(rows).set_index(["target", "level"])
    if "video_auc" not in table:
        notes.append("Video level: n/a (the dataset gives no video id for some samples).")
    for code in sorted({r for r in table.get("reason", []) if r}):
        notes.append(f"n/a: {code}: {reason_text(code)}")
    return frame, notes


def _level_row(row: pd.Series, level: str, prefix: str) -> dict:
    out = {"target": row["target"], "level": level, "reals": int(row[f"{prefix}n_real"]),
           "fakes": int(row[f"{prefix}n_fake"])}
    for key in METRICS:
        label = LABELS[key]
        out[f"{label}"] = 100 * row[f"{prefix}{key}"]
        out[f"{label} lo"] = 100 * row.get(f"{prefix}{key}_lo", math.nan)
        out[f"{label} hi"] = 100 * row.get(f"{prefix}{key}_hi", math.nan)
    return out


def under_attack_long(records: pd.DataFrame, reals: pd.DataFrame, adv_column: str, real_column: str,
                      n_boot: int) -> pd.DataFrame:
    """One row per cell: frame / video AUC (%) under attack and ASR (%) over both denominators."""
    real_scores = reals[["target", "video_id"]].assign(p_fake=reals[real_column])
    table = under_attack_table(records, real_scores, adv_column=adv_column, n_boot=n_boot, auc_boot=0)
    out = pd.DataFrame({"source": table["source"], "attack": table["attack"], "target": table["target"]})
    out["AUC (%) frame"] = 100 * table["frame_auc"]
    out["AUC (%) video"] = 100 * table["video_auc"] if "video_auc" in table else math.nan
    out[ASR_DETECTED] = 100 * table["asr_detected"]
    out[f"{ASR_DETECTED} lo"] = 100 * table["asr_detected_lo"]
    out[f"{ASR_DETECTED} hi"] = 100 * table["asr_detected_hi"]
    out[ASR_ALL] = 100 * table["asr_all"]
    out[f"{ASR_ALL} lo"] = 100 * table["asr_all_lo"]
    out[f"{ASR_ALL} hi"] = 100 * table["asr_all_hi"]
    out["attacked"] = table["n_attacked"]
    out["detected"] = table["n_detected"]
    return out


def auc_matrix(long: pd.DataFrame, detectors: pd.DataFrame) -> pd.DataFrame:
    """Rows (attack, source), columns targets: frame AUC (%) under attack; first row: the clean
    frame AUC of the ``detectors`` table."""
    matrix = long.pivot_table(index=["attack", "source"], columns="target", values="AUC (%) frame", sort=False)
    clean = detectors.xs("frame", level="level")["AUC"].to_dict()
    head = pd.DataFrame([clean], index=pd.MultiIndex.from_tuples([("clean", "-")], names=["attack", "source"]))
    matrix = pd.concat([head, matrix])[list(dict.fromkeys(long["target"]))]
    matrix.columns.name = None
    return matrix


def asr_before_after(long: pd.DataFrame, post: pd.DataFrame, op: str) -> pd.DataFrame:
    """Per attack: mean white-box (source = target) and transfer ASR (%), before and after ``op``."""
    rows = []
    for attack, cell in long.groupby("attack", sort=False):
        after = post[post["attack"] == attack]
        diag, off = cell["source"] == cell["target"], cell["source"] != cell["target"]
        pdiag, poff = after["source"] == after["target"], after["source"] != after["target"]
        rows.append({"attack": attack,
                     "white-box ASR": _mean(cell.loc[diag, ASR_DETECTED]),
                     f"white-box ASR after {op}": _mean(after.loc[pdiag, ASR_DETECTED]),
                     "transfer ASR": _mean(cell.loc[off, ASR_DETECTED]),
                     f"transfer ASR after {op}": _mean(after.loc[poff, ASR_DETECTED])})
    return pd.DataFrame(rows).set_index("attack")


def _mean(values: pd.Series) -> float:
    values = values.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan
