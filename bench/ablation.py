"""Ablation views of latent attacks, read from records and the options stored in the run's
manifest when it was computed (preset expanded then), never from today's presets.

- ``ablation_levels``: white-box and transfer ASR per W+ level mask (S / M / D / full), the
  paper's Table 4. Rendered when a run holds latent attacks that differ in ``levels``.
- ``ablation_step``: ASR against image quality per step size (the paper's Table 5). Rendered
  when a run holds latent attacks that differ in ``step``.
- ``latent_change_<attack>.png``: the mean per-row L2 change of W+ over successful samples
  (the paper's Fig. 3), one bar per row, for every latent attack that reports it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.store import safe_part, save_png

QUALITY = [("q_lpips", "LPIPS"), ("q_tv_adv", "TV adv"), ("q_esnle_adv", "ESNLE adv"), ("q_id_same", "ID ret. (%)"),
           ("q_psnr", "PSNR")]


def latent_options(manifest: dict) -> dict[str, dict]:
    """attack label -> its options as resolved when the run was computed, for the eraser
    attacks of a run (``identity.attacks`` of the manifest)."""
    return {spec["label"]: spec["options"] for spec in manifest.get("identity", {}).get("attacks", [])
            if spec["name"] == "eraser"}


def _asr(group: pd.DataFrame) -> float:
    eligible = group["eligible"].sum()
    return 100 * group["success"].sum() / eligible if eligible else float("nan")


def _per_attack(records: pd.DataFrame, label: str) -> dict[str, float]:
    rows = records[records["attack"] == label]
    white = rows[rows["source"] == rows["target"]]
    transfer = rows[rows["source"] != rows["target"]]
    cells = [_asr(g) for _, g in transfer.groupby(["source", "target"])]
    return {"white-box ASR": _asr(white), "transfer ASR": float(np.nanmean(cells)) if cells else float("nan")}


def level_view(records: pd.DataFrame, manifest: dict) -> pd.DataFrame | None:
    options = latent_options(manifest)
    levels = {label: str(opts.get("levels", "full")) for label, opts in options.items()}
    if len(set(levels.values())) < 2:
        return None
    rows = [{"attack": label, "levels": level, **_per_attack(records, label)} for label, level in levels.items()]
    return pd.DataFrame(rows).set_index("attack")


def step_view(records: pd.DataFrame, manifest: dict) -> pd.DataFrame | None:
    options = latent_options(manifest)
    steps = {label: float(opts.get("step", float("nan"))) for label, opts in options.items()}
    if len(set(steps.values())) < 2:
        return None
    rows = []
    for label, step in sorted(steps.items(), key=lambda kv: kv[1]):
        row = {"attack": label, "step": step, **_per_attack(records, label)}
        chosen = records[(records["attack"] == label) & (records["source"] == records["target"]) & records["success"]]
        for column, title in QUALITY:
            if column in chosen:
                values = chosen[column].astype(float)
                row[title] = float(values.mean() * (100 if column == "q_id_same" else 1)) if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("attack")


def latent_change_figures(records: pd.DataFrame, folder: Path) -> list[Path]:
    """One bar chart per latent attack: mean |w - w0| per W+ row over white-box successes."""
    if "info_latent_change" not in records:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    latent = records[(records["attack_kind"] == "latent") & (records["source"] == records["target"])]
    for attack, group in latent.groupby("attack", sort=False):
        chosen = group[group["success"]]
        values = [np.asarray(v, dtype=float) for v in chosen["info_latent_change"] if v is not None]
        if not values or values[0].ndim != 1 or not np.any(np.concatenate(values)):
            continue
        mean = np.mean(np.stack(values), axis=0)
        fig, ax = plt.subplots(figsize=(1.5 + 0.35 * len(mean), 3))
        ax.bar(np.arange(1, len(mean) + 1), mean, color="#4c72b0")
        ax.set_xlabel("W+ row (1 = coarsest)")
        ax.set_ylabel("mean L2 change")
        ax.set_title(f"{attack}: latent change of {len(values)} successful samples")
        ax.set_xticks(np.arange(1, len(mean) + 1))
        fig.tight_layout()
        written.append(save_png(fig, folder / f"latent_change_{safe_part(attack)}.png"))
    return written


def ablation_views(records: pd.DataFrame, manifest: dict) -> dict[str, pd.DataFrame]:
    views = {}
    for name, view in (("ablation_levels", level_view(records, manifest)),
                       ("ablation_step", step_view(records, manifest))):
        if view is not None:
            views[name] = view
    return views
