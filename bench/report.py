"""Views over stored records: ASR matrices, the leaderboard, quality tables, heatmaps, and the
CSV / LaTeX / Markdown renderings. Nothing here computes attacks; everything reads records."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.attack_health import flagged_per_attack
from bench.ensemble import ENSEMBLE
from bench.metrics.asr import asr_table
from bench.sample_counts import FOOTNOTE, cell_counts, eligible_table, leaderboard_counts, limit_note, marked_matrix
from bench.store import RunStore, atomic_write, safe_part

FORMATS = ("csv", "latex", "md")
_EXT = {"csv": "csv", "latex": "tex", "md": "md"}
NOT_BOLDED = {"median queries"}  # fewer is better: the largest is not the best


# -- views -----------------------------------------------------------------------------------------
def asr_long(records: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """One row per (source, attack, target): ASR in %, its 95 % interval, both denominators."""
    table = asr_table(records, n_boot=n_boot)
    for col in ("asr", "asr_lo", "asr_hi", "asr_inv_denominator"):
        table[col] = 100 * table[col]
    return table


def asr_matrix(long: pd.DataFrame, attack: str) -> pd.DataFrame:
    """Source x target ASR (%) for one attack; rows are sources, columns targets."""
    sub = long[long["attack"] == attack]
    order_s = sorted(dict.fromkeys(sub["source"]), key=lambda s: s == ENSEMBLE)  # the ensemble row last
    order_t = list(dict.fromkeys(sub["target"]))
    matrix = sub.pivot(index="source", columns="target", values="asr").loc[order_s, order_t]
    matrix.index.name, matrix.columns.name = "source \\ target", None
    return matrix


def leaderboards(long: pd.DataFrame, records: pd.DataFrame, traits: dict[str, dict]) -> dict[str, tuple[str, pd.DataFrame]]:
    """One leaderboard per threat model: stem -> (title with its budget, board). L∞ attacks are
    ranked only against attacks of the same ε; latent walks and unbounded (statistical) attacks
    each among themselves. Attacks without stored traits (older runs) form an 'other' board."""
    groups: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    for attack in dict.fromkeys(long["attack"]):
        trait = traits.get(attack, {})
        family = trait.get("threat_model", "other")
        stem, title = _family_stem(family, trait.get("budget", {}))
        groups.setdefault(stem, []).append(attack)
        titles[stem] = title
    return {stem: (titles[stem], leaderboard(long[long["attack"].isin(attacks)], records))
            for stem, attacks in groups.items()}


def _family_stem(family: str, budget: dict) -> tuple[str, str]:
    if family == "linf" and budget.get("eps") not in (None, "None"):
        eps = float(budget["eps"])
        return f"leaderboard_linf_{eps:.4g}", f"Leaderboard, L∞ ε = {eps:.4g} ({eps * 255:.3g}/255)"
    if family == "latent":
        return "leaderboard_latent", "Leaderboard, latent sign-step in W+ (budget: step × steps, per row)"
    if family in ("statistical", "linf"):  # an L∞ attack without a bound is unbounded
        return "leaderboard_statistical", "Leaderboard, unbounded / statistical (no norm bound; budget per row)"
    return f"leaderboard_{safe_part(family)}", f"Leaderboard, {family}"


def leaderboard(long: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Per attack: white-box ASR (diagonal) and mean transfer ASR (off-diagonal), with budget.
    Rank only attacks of one threat model (``leaderboards``)."""
    rows = []
    for attack, sub in long.groupby("attack", sort=False):
        diag = sub[sub["source"] == sub["target"]]["asr"]
        off = sub[sub["source"] != sub["target"]]["asr"]
        first = records[records["attack"] == attack].iloc[0]
        rows.append({
            "attack": attack,
            "kind": first.get("attack_kind", ""),
            "budget": _budget_text(first),
            "white-box ASR": float(diag.mean()) if len(diag) else math.nan,
            "transfer ASR": float(off.mean()) if len(off) else math.nan,
            "n": int(sub["n"].iloc[0]),
            **leaderboard_counts(sub),
            "median queries": median_queries(records[records["attack"] == attack]),
        })
    board = pd.DataFrame(rows).sort_values(["transfer ASR", "white-box ASR"], ascending=False, na_position="last")
    if board["median queries"].isna().all():  # no query-based (black-box) attack on this board
        board = board.drop(columns="median queries")
    board = board.set_index("attack")
    board["flagged"] = flagged_per_attack(records).reindex(board.index)  # attack health; NaN: not recorded
    return board


def median_queries(rows: pd.DataFrame) -> float:
    """Median detector queries per successful white-box sample (the Square Attack paper's
    convention), for attacks that record ``info_queries``; NaN for the others."""
    if "info_queries" not in rows:
        return math.nan
    white = rows[(rows["source"] == rows["target"]) & rows["success"].astype(bool)]
    queries = white["info_queries"].astype(float)
    return float(queries.median()) if queries.notna().any() else math.nan


def _budget_text(row: pd.Series) -> str:
    parts = []
    for key in ("norm", "eps", "steps"):
        value = row.get(f"budget_{key}")
        if isinstance(value, str) and value not in ("", "None", "nan"):
            parts.append(_short(value) if key == "eps" else value)
    return " ".join(parts)


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


# -- renderers -------------------------------------------------------------------------------------
def to_markdown(frame: pd.DataFrame, digits: int = 1, bold: bool = True) -> str:
    """A GitHub table; with ``bold``, the largest value of each float column in bold."""
    frame = frame.reset_index() if frame.index.name or not isinstance(frame.index, pd.RangeIndex) else frame
    # a column whose values are all equal has no best value to show
    best = {c: frame[c].max() for c in frame.columns
            if _numeric(frame[c]) and frame[c].nunique() > 1 and c not in NOT_BOLDED}
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if _numeric(frame[c]) else "---" for c in frame.columns) + "|"
    lines = [header, rule]
    for _, row in frame.iterrows():
        cells = []
        for c in frame.columns:
            text = _fmt(row[c], digits)
            if bold and c in best and _is_number(row[c]) and row[c] == best[c] and not pd.isna(best[c]):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_latex(frame: pd.DataFrame, caption: str = "", digits: int = 1, bold: bool = True) -> str:
    """booktabs LaTeX through pandas Styler; with ``bold``, the largest value per float column in bold."""
    frame = frame.copy()
    numeric = [c for c in frame.columns if _numeric(frame[c])]
    styler = frame.style.format(precision=digits, na_rep="n/a", subset=numeric)
    varying = [c for c in numeric if frame[c].nunique() > 1 and c not in NOT_BOLDED]
    if varying and bold:
        styler = styler.highlight_max(subset=varying, props="textbf:--rwrap;", axis=0)
    styler = styler.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    styler = styler.format(escape="latex", na_rep="n/a", subset=[c for c in frame.columns if c not in numeric])
    return styler.to_latex(hrules=True, caption=caption or None, position_float="centering") + ""


def _numeric(series: pd.Series) -> bool:
    """Columns that take part in best-in-bold: float measurements, not counts or flags."""
    return pd.api.types.is_float_dtype(series)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _fmt(value, digits: int) -> str:
    if _is_number(value):
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def bolds_best(stem: str) -> bool:
    """ASR tables bold their best (largest) value; quality, ablation, sweep and detection tables
    mix directions (a higher AUC is the detector's win, a lower one the attack's)."""
    return not stem.startswith(("quality", "ablation", "sweep", "detectors", "auc_", "under_attack"))


def fold_intervals(frame: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """For reading: each column ``X`` with companions ``X lo`` / ``X hi`` becomes one text column
    ``X [95 % CI]`` such as ``97.3 [95.1, 99.0]`` (CSV keeps the three numbers)."""
    pairs = [c for c in frame.columns if f"{c} lo" in frame.columns and f"{c} hi" in frame.columns]
    if not pairs:
        return frame
    out = frame.copy()
    for c in pairs:
        text = [_fmt(v, digits) if pd.isna(lo) else f"{_fmt(v, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"
                for v, lo, hi in zip(frame[c], frame[f"{c} lo"], frame[f"{c} hi"])]
        out[c] = text
        out = out.drop(columns=[f"{c} lo", f"{c} hi"])
    return out


def write_table(frame: pd.DataFrame, folder: Path, stem: str, caption: str = "", note: str = "",
                footnotes: list[str] | None = None) -> list[Path]:
    """``note`` goes above the Markdown table, ``footnotes`` (n/a reasons) below it; LaTeX puts
    both in the caption. CSV holds the numbers only."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    readable = fold_intervals(frame, _digits(stem))
    for fmt in FORMATS:
        path = folder / f"{stem}.{_EXT[fmt]}"
        if fmt == "csv":
            text = frame.to_csv(float_format="%.4f")
        elif fmt == "latex":
            text = to_latex(readable, caption=" ".join(filter(None, (caption, note, *(footnotes or [])))),
                            digits=_digits(stem),
                            bold=bolds_best(stem))
        else:
            text = (f"{note}\n\n" if note else "") + to_markdown(readable, digits=_digits(stem), bold=bolds_best(stem))
            text += "".join(f"\n{line}\n" for line in footnotes or [])
        atomic_write(path, lambda p, t=text: p.write_text(t))
        written.append(path)
    return written


def _digits(stem: str) -> int:
    return 3 if stem.startswith(("quality", "ablation", "sweep")) else 1


def heatmap(matrix: pd.DataFrame, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_s, n_t = matrix.shape
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * n_t, 1.0 + 0.8 * n_s))
    data = matrix.to_numpy(dtype=float)
    im = ax.imshow(data, vmin=0, vmax=100, cmap="magma")
    ax.set_xticks(range(n_t), labels=list(matrix.columns), rotation=30, ha="right")
    ax.set_yticks(range(n_s), labels=list(matrix.index))
    ax.set_xlabel("target detector")
    ax.set_ylabel("source detector")
    for i in range(n_s):
        for j in range(n_t):
            value = data[i, j]
            ax.text(j, i, "n/a" if np.isnan(value) else f"{value:.0f}", ha="center", va="center",
                    color="black" if (not np.isnan(value) and value > 60) else "white", fontsize=9)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="ASR (%)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png", metadata={"Software": None}))
    plt.close(fig)
    return path


# -- the run's views ------------------------------------------------------------------------------
def views(store: RunStore) -> dict[str, pd.DataFrame]:
    """Every table of a run, by stem name; the single place tables are derived from records.
    Remembered while the records file is unchanged: `bench run` writes tables/ and its
    BENCHMARK.md section from the same views, and the bootstrap intervals take seconds."""
    return dict(_cached(store)[0])


def titles(store: RunStore) -> dict[str, str]:
    """stem -> the table's title (a leaderboard's names its threat model and budget)."""
    frames, named, _ = _cached(store)
    return {stem: named.get(stem, stem.replace("_", " ")) for stem in frames}


def footnotes_of(store: RunStore) -> dict[str, list[str]]:
    """stem -> the footnote lines of its n/a cells (reason and count), empty when none."""
    frames, _, notes = _cached(store)
    return {stem: list(notes.get(stem, [])) for stem in frames}


def _cached(store: RunStore) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, list[str]]]:
    if not store.records_path.is_file():
        store.records()  # raises the clear "no records yet" error
    stat = store.records_path.stat()
    manifest_stat = (store.root / "manifest.json").stat()
    return _views(store.root.resolve(), stat.st_mtime_ns, stat.st_size, manifest_stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _views(root: Path, mtime_ns: int, size: int, manifest_mtime_ns: int
           ) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, list[str]]]:
    """All views from the run folder alone: records plus the manifest (render settings such as
    the bootstrap count, and the resolved options and traits stored when the run was computed)."""
    store = RunStore(root)
    records = store.records()
    manifest = store.manifest
    config = manifest.get("config", {})
    n_boot = int(config.get("metrics", {}).get("bootstrap", 1000))
    long = asr_long(records, n_boot=n_boot)
    out: dict[str, pd.DataFrame] = {"asr_all": long.set_index(["source", "attack", "target"])}
    named: dict[str, str] = {}
    for stem, (title, board) in leaderboards(long, records, manifest.get("traits", {})).items():
        out[stem], named[stem] = board, title
    out["eligible"] = eligible_table(long)
    named["eligible"] = "Eligible samples per cell"
    for attack in dict.fromkeys(long["attack"]):
        out[f"asr_{safe_part(attack)}"] = asr_matrix(long, attack)
        named[f"asr_{safe_part(attack)}"] = f"Transfer ASR (%): {attack}"
    from bench.ablation import ablation_views
    from bench.detection_views import detection_views
    from bench.metrics.quality_table import quality_footnotes, quality_views
    from bench.sweep_figure import sweep_views

    detection, detection_titles, notes = detection_views(records, store.scores(), config.get("postprocess") or [],
                                                         n_boot)
    out = {**detection, **out}  # the victims' clean performance first, as every reader expects
    named.update(detection_titles)
    quality = quality_views(records, config, n_boot=n_boot)
    out.update(quality)
    for stem in quality:
        notes[stem] = quality_footnotes(records, paper=config.get("metrics", {}).get("mode", "paper") == "paper")
    out.update(ablation_views(records, manifest))
    out.update(sweep_views(records, n_boot=n_boot))
    if "sweep" in out:
        named["sweep"] = "Budget sweep: transfer ASR (%) and quality, 95 % intervals"
    return out, named, notes


def is_leaderboard(stem: str) -> bool:
    return stem.startswith("leaderboard")


def render_tables(store: RunStore, quiet: bool = False) -> dict[str, pd.DataFrame]:
    """tables/ (csv, tex, md) and figures/ (heatmaps, latent change) from the run folder."""
    tables = views(store)
    note = limit_note(store.manifest)
    named, notes = titles(store), footnotes_of(store)
    for stem, frame in tables.items():
        write_table(frame, store.tables_dir, stem, caption=named[stem], note=note, footnotes=notes[stem])
        if stem.startswith("asr_") and stem != "asr_all":
            heatmap(frame, f"transfer ASR: {stem[4:]}", store.figures_dir / f"{stem}.png")
    from bench.ablation import latent_change_figures

    latent_change_figures(store.records(), store.figures_dir)
    if "sweep" in tables:
        from bench.sweep_figure import sweep_figures

        sweep_figures(tables["sweep"], store.figures_dir)
    return tables


def export(store: RunStore, fmt: str) -> str:
    """One document with every table of the run in the given format."""
    tables = views(store)
    named, notes = titles(store), footnotes_of(store)
    manifest = store.manifest
    chunks = []
    for stem, frame in tables.items():
        readable = fold_intervals(frame, _digits(stem))
        if fmt == "md":
            below = "".join(f"\n{line}\n" for line in notes[stem])
            chunks.append(f"### {named[stem]}\n\n{to_markdown(readable, _digits(stem), bolds_best(stem))}{below}")
        elif fmt == "latex":
            caption = " ".join([named[stem], *notes[stem]])
            chunks.append(f"% {stem}\n{to_latex(readable, caption, _digits(stem), bolds_best(stem))}")
        else:
            chunks.append(f"# {named[stem]} ({stem})\n{frame.to_csv(float_format='%.4f')}")
    note = limit_note(manifest)
    head = {"md": f"Run `{manifest['run_id']}` of matrix `{manifest['matrix']}`. {note}\n\n",
            "latex": f"% run {manifest['run_id']} of matrix {manifest['matrix']}\n", "csv": ""}[fmt]
    return head + "\n".join(chunks)


def render_benchmark_section(store: RunStore, section: str, note: str = "") -> str:
    """The Markdown block that BENCHMARK.md holds for one run (between section markers)."""
    tables = views(store)
    named, notes = titles(store), footnotes_of(store)
    manifest = store.manifest
    lines = [f"## {section}", ""]
    if note:
        lines += [note.strip(), ""]
    if limit_note(manifest):
        lines += [f"**{limit_note(manifest)}**", ""]
    lines += [f"Matrix `{manifest['matrix']}`, run `{manifest['run_id']}`, commit `{manifest['git_commit'][:12]}`, "
              f"torch {manifest['versions'].get('torch')}. Rendered by `bench export` from stored records; "
              "do not edit by hand.", ""]

    def table(stem: str, title: str, frame: pd.DataFrame) -> list[str]:
        body = to_markdown(fold_intervals(frame, _digits(stem)), _digits(stem), bolds_best(stem)).rstrip()
        return [f"### {title}", "", body, "", *[line for note in notes[stem] for line in (note, "")]]

    if "detectors" in tables:  # the victims' clean performance first: every number below is relative to it
        lines += table("detectors", named["detectors"], tables["detectors"])
    for stem, frame in tables.items():  # one leaderboard per threat model, its budget in the title
        if is_leaderboard(stem):
            lines += [f"### {named[stem]}", "", to_markdown(frame).rstrip(), ""]
    if any(is_leaderboard(stem) and (frame["few"] != "").any() for stem, frame in tables.items()):
        lines += [FOOTNOTE, ""]
    for stem, frame in tables.items():
        if stem.startswith("asr_") and stem != "asr_all":
            marked = marked_matrix(frame, cell_counts(tables["eligible"], stem[4:], frame))
            lines += [f"### Transfer ASR (%): {stem[4:]}", "", to_markdown(marked).rstrip(), ""]
        elif (stem.startswith(("quality", "ablation", "sweep"))) and stem != "quality_ci":  # intervals stay in tables/
            lines += table(stem, stem.replace("_", " "), frame)
        elif stem == "auc_under_attack" or stem.startswith("postprocess_"):  # the long forms stay in tables/
            lines += table(stem, named[stem], frame)
    return "\n".join(lines) + "\n"


def update_benchmark_md(path: Path, section: str, body: str) -> None:
    """Replace (or append) the block between this section's markers; other sections stay."""
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    block = f"{start}\n{body}{end}\n"
    text = path.read_text() if path.exists() else (
        "# BENCHMARK\n\nLeaderboards rendered from stored run records by `bench export --to BENCHMARK.md`. "
        "Never edited by hand.\n\n")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    atomic_write(path, lambda p: p.write_text(text))
