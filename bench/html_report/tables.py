"""A view (a DataFrame from ``bench.report.views``) as a table model the page template renders.

Tables are grouped into the page's sections by the prefix of their stem, so tables that other
parts of the harness add later (a clean-performance table, one leaderboard per threat model)
land in the right section without a change here; an unknown stem goes to "More tables".
ASR matrices (index named "source \\ target") get coloured cells. Every missing value prints
as "n/a" with a footnote that says why it is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.html_report.colours import scale_colour, text_colour
from bench.report import bolds_best

MATRIX_INDEX = "source \\ target"
LONG_FORM_LEVELS = 3  # tables indexed by this many keys or more are long form: folded by default
LONG_FORM_ROWS = 40

# (section id, heading, stem prefixes), in page order; the last one catches every other stem
SECTIONS = [
    ("detectors", "Detectors, clean and under attack", ("detector", "clean", "auc_", "under_attack", "postprocess")),
    ("leaderboards", "Leaderboards", ("leaderboard",)),
    ("matrices", "Transfer ASR", ("asr", "eligible")),
    ("quality", "Image quality and identity", ("quality", "identity")),
    ("ablations", "Ablations and sweeps", ("ablation", "sweep")),
    ("more", "More tables", ()),
]

CAPTIONS = {  # by exact stem, else by prefix
    "asr_all": "Every (source, attack, target) cell: ASR in % with its 95 % bootstrap interval over videos, "
               "and both denominators.",
    "quality_ci": "95 % bootstrap intervals of the quality means, over videos.",
    "eligible": "Eligible samples (the ASR denominator: fakes the target called fake when clean) per "
                "(source, attack) row and target column; an ASR under 10 eligible samples is marked †.",
    "quality": "White-box rows (source = target), and the ensemble row: its sets, each graded by the target it "
               "was made for. Means per video, then over videos.",
}
COLUMN_CAPTIONS = {  # a leaderboard's caption defines the columns it has
    "white-box ASR": "White-box ASR: mean over the diagonal cells (source = target).",
    "transfer ASR": "Transfer ASR: mean over the off-diagonal cells.",
}
MATRIX_CAPTION = ("Rows: the source detector the attack ran against; columns: the target detector that scored "
                  "the adversarial images; cells: ASR in %, coloured on the scale above.")
TITLES = {"asr_all": "Every transfer-ASR cell, with 95 % intervals", "eligible": "Eligible samples per cell", "quality_ci": "Quality: 95 % intervals"}


@dataclass
class Cell:
    text: str
    sort: str  # data-sort value: a number for numeric cells, "" for n/a (sorted last), else the text
    header: bool = False  # index columns are row headers
    bold: bool = False
    background: str | None = None
    colour: str | None = None
    note: int | None = None  # footnote number of an n/a cell


@dataclass
class Table:
    stem: str
    title: str
    caption: str
    columns: list[str]
    numeric: list[bool]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    coloured: bool = False
    folded: bool = False

    @property
    def anchor(self) -> str:
        return f"t-{self.stem}"


def section_of(stem: str, frame: pd.DataFrame) -> str:
    if is_matrix(frame):
        return "matrices"
    for section, _, prefixes in SECTIONS:
        if stem.startswith(prefixes):
            return section
    return "more"


def is_matrix(frame: pd.DataFrame) -> bool:
    return frame.index.name == MATRIX_INDEX


def title_of(stem: str, frame: pd.DataFrame) -> str:
    if is_matrix(frame):
        return f"Transfer ASR (%): {stem.removeprefix('asr_')}"
    if stem in TITLES:
        return TITLES[stem]
    head, _, rest = stem.partition("_")
    if rest and any(head in prefixes for _, _, prefixes in SECTIONS):  # leaderboard_white_box
        return f"{head.capitalize()}: {rest.replace('_', ' ')}"
    return stem.replace("_", " ").capitalize()


def caption_of(stem: str, frame: pd.DataFrame, mode: str) -> str:
    if is_matrix(frame):
        return ""  # MATRIX_CAPTION, once above all matrices
    caption = CAPTIONS.get(stem) or next((CAPTIONS[p] for p in ("quality",) if stem.startswith(p)), "")
    if stem.startswith("leaderboard"):
        caption = " ".join(text for column, text in COLUMN_CAPTIONS.items() if column in frame.columns)
    if stem.startswith("quality") and stem != "quality_ci":
        subset = "successful samples only (paper mode)" if mode == "paper" else (
            "successful samples" if stem.endswith("success") else "all attacked fakes")
        caption += f" Averaged over {subset}; n counts them."
    return caption


def digits_of(stem: str, column: pd.Series) -> int:
    """Decimals of a column: 1 for ASR tables (in %); 3 for quality and ablation tables and for
    fractions (AUC, accuracy) elsewhere; else 1."""
    if stem.startswith(("asr", "leaderboard")):
        return 1
    finite = column[np.isfinite(column.astype(float))]
    fraction = len(finite) > 0 and float(finite.abs().max()) <= 1
    return 3 if stem.startswith(("quality", "ablation")) or fraction else 1


def format_number(value: float, digits: int) -> str:
    if value != 0 and abs(value) < 10 ** -digits:  # tiny values (ESNLE) would print as 0.000
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_float(value) -> bool:
    return isinstance(value, (float, np.floating))


def na_reason(row: dict, column: str, frame: pd.DataFrame, stem: str, mode: str,
              recorded: list[str] | None = None) -> str:
    """Why one cell of a view has no value: the stored reason codes when the records have them
    (``recorded``: the view's footnotes, ``"<column>: n/a for ... (<code>: ...)"``), otherwise as
    precisely as the view itself can tell."""
    stated = [line for line in recorded or [] if line.startswith(f"{column}: ")]
    if stated:
        return " ".join(stated)
    if "n" in frame.columns and _is_int(row.get("n")) and int(row["n"]) == 0:
        chosen = "successful" if mode == "paper" or stem.endswith("success") else "attacked"
        return f"n = 0: this row has no {chosen} sample to average."
    if frame[column].isna().all():
        return (f"{column}: no sample of this run has a value, so it was not measured (the metric's model is "
                "not available on this machine, e.g. LPIPS without its AlexNet weights; the run's log names it).")
    if stem.startswith("asr") or is_matrix(frame):
        return "No eligible sample: the target called none of these fakes fake before the attack."
    if stem.startswith("leaderboard"):
        return "No cell of this kind: e.g. no source detector is also a target, or none differs from it."
    return f"{column}: no sample of this row has a value."


def build_table(stem: str, frame: pd.DataFrame, mode: str = "paper", recorded: list[str] | None = None) -> Table:
    coloured = is_matrix(frame)
    index_names = [n for n in frame.index.names if n is not None]
    flat = frame.reset_index() if index_names else frame.copy()
    flat.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in flat.columns]
    n_index = len(index_names)
    numeric = [i >= n_index and pd.api.types.is_numeric_dtype(flat[c]) and not pd.api.types.is_bool_dtype(flat[c])
               for i, c in enumerate(flat.columns)]
    best = {c: flat[c].max() for c in flat.columns[n_index:]
            if bolds_best(stem) and not coloured and pd.api.types.is_float_dtype(flat[c]) and flat[c].nunique() > 1}
    digits = {c: digits_of(stem, flat[c]) for c, is_number in zip(flat.columns, numeric) if is_number}
    notes: list[str] = []
    rows = []
    for row in flat.to_dict("records"):  # native values, each of its column's type (iterrows upcasts ints)
        cells = []
        for i, column in enumerate(flat.columns):
            value = row[column]
            if i < n_index:
                cells.append(Cell(str(value), str(value), header=True))
            elif _is_float(value) and math.isnan(value):
                reason = na_reason(row, column, flat, stem, mode, recorded)
                if reason not in notes:
                    notes.append(reason)
                cells.append(Cell("n/a", "", note=notes.index(reason) + 1))
            elif _is_int(value):
                cells.append(Cell(str(int(value)), str(int(value))))
            elif _is_float(value):
                background = scale_colour(float(value)) if coloured else None
                cells.append(Cell(format_number(float(value), digits.get(column, 3)), repr(float(value)),
                                  bold=column in best and value == best[column], background=background,
                                  colour=text_colour(background) if background else None))
            else:
                cells.append(Cell(str(value), str(value)))
        rows.append(cells)
    folded = frame.index.nlevels >= LONG_FORM_LEVELS or len(frame) > LONG_FORM_ROWS
    return Table(stem, title_of(stem, frame), caption_of(stem, frame, mode), list(flat.columns), numeric, rows,
                 notes, coloured, folded)
