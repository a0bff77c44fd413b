"""How many samples each number rests on: eligible counts per ASR cell, the mark for cells
with too few, and the note a run limited to N fakes carries in its tables.

ASR's denominator is the number of *eligible* fakes (the target called the clean image fake),
not the number attacked: "white-box ASR 100, n 2" can rest on one sample. Views and the
BENCHMARK section therefore show the eligible count per cell and mark the cells under
``FEW_ELIGIBLE`` samples.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

FEW_ELIGIBLE = 10
MARK = "†"
FOOTNOTE = (f"{MARK} fewer than {FEW_ELIGIBLE} eligible samples (the ASR denominator); every cell's count is in "
            "the run's `tables/eligible.csv` and in `bench show`.")


def eligible_table(long: pd.DataFrame) -> pd.DataFrame:
    """Eligible samples per (source, attack) row and target column: every ASR cell's denominator."""
    rows = list(dict.fromkeys(zip(long["source"], long["attack"])))
    targets = list(dict.fromkeys(long["target"]))
    table = long.pivot_table(index=["source", "attack"], columns="target", values="n_eligible", aggfunc="first")
    table = table.loc[rows, targets].astype(int)
    table.columns.name = None
    return table


def cell_counts(eligible: pd.DataFrame, attack_part: str, matrix: pd.DataFrame) -> pd.DataFrame:
    """The eligible counts behind the ASR matrix ``asr_<attack_part>``, in its shape."""
    from bench.store import safe_part

    attacks = [a for a in dict.fromkeys(eligible.index.get_level_values("attack")) if safe_part(a) == attack_part]
    counts = eligible.xs(attacks[0], level="attack")
    return counts.loc[list(matrix.index), list(matrix.columns)]


def leaderboard_counts(cells: pd.DataFrame) -> dict[str, Any]:
    """Leaderboard columns for one attack's cells: the smallest eligible count and the mark."""
    least = int(cells["n_eligible"].min())
    return {"min eligible": least, "few": MARK if least < FEW_ELIGIBLE else ""}


def marked_matrix(matrix: pd.DataFrame, eligible: pd.DataFrame, digits: int = 1, bold: bool = True) -> pd.DataFrame:
    """An ASR matrix as text: with ``bold``, the best value of each column in Markdown bold; cells
    under ``FEW_ELIGIBLE`` eligible samples marked with ``MARK``. ``eligible`` has the same shape."""
    text = pd.DataFrame(index=matrix.index, columns=matrix.columns, dtype=object)
    for col in matrix.columns:
        values = matrix[col]
        best = values.max() if values.nunique() > 1 else None
        for row in matrix.index:
            value = values[row]
            cell = "n/a" if pd.isna(value) else f"{value:.{digits}f}"
            if bold and best is not None and not pd.isna(value) and value == best:
                cell = f"**{cell}**"
            if int(eligible.loc[row, col]) < FEW_ELIGIBLE:
                cell += MARK
            text.loc[row, col] = cell
    return text


def limit_note(manifest: dict[str, Any]) -> str:
    """One sentence for a run that attacked at most N fakes per cell; empty for a full run."""
    limit = manifest.get("config", {}).get("limit")
    if not limit:
        return ""
    return (f"Limited run: at most {limit} fake samples attacked per cell (limit {limit}), "
            "not the whole test split.")
