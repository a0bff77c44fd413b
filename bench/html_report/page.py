"""Assemble a run's page: header from the manifest, sections from the report views and the
run's figures, then render ``page.html.j2``. Reads the run folder only; writes one file."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bench.html_report.colours import ASR_COLORMAP, legend_stops
from bench.html_report.images import IMAGE_BUDGET_BYTES, MAX_IMAGE_BYTES, MAX_SIDE, Embedded, ImageBudget
from bench.html_report.pending import explanation_pending, has_shards, shard_progress
from bench.html_report.tables import MATRIX_CAPTION, SECTIONS, Table, build_table, is_matrix, section_of
from bench.store import RunStore, atomic_write

# manifest keys shown in their own blocks; any other key (e.g. hardware added later) is listed too
SHOWN_APART = {"config", "versions", "checkpoints"}
# what the compute stage stores for resuming and rendering (resolved options, sample lists, hashes):
# summarised below, never dumped whole into the header
FOR_MACHINES = {"identity", "fingerprints", "samples", "traits"}
FIGURE_SECTIONS = [("ablations", ("latent_change", "ablation", "sweep"))]  # other figures: "more"
FIGURE_CAPTIONS = {"latent_change_": "{rest}: mean L2 change of each W+ row over the white-box successes (paper Fig. 3)."}
EXPLAIN_COLUMNS = ("original | {inversion}adversarial | amplified |residual| | Grad-CAM of each detector on the original "
                   "and on the adversarial image, the source detector first")


@dataclass
class Item:
    """A table with the figure drawn from it (the heatmap of an ASR matrix), or a figure alone."""

    table: Table | None = None
    figure: Embedded | None = None
    caption: str = ""


@dataclass
class Section:
    id: str
    heading: str
    items: list[Item] = field(default_factory=list)


def run_facts(manifest: dict) -> list[tuple[str, str]]:
    config = manifest.get("config", {})
    dataset = config.get("dataset", {})
    facts = [("matrix", manifest.get("matrix", "?")), ("run id", manifest.get("run_id", "?")),
             ("created", manifest.get("created", "?")), ("git commit", manifest.get("git_commit", "?")),
             ("seed", manifest.get("seed")), ("device (config)", config.get("device")),
             ("CUDA devices", manifest.get("torch_device_count")),
             ("dataset", f"{dataset.get('name', '?')} {json.dumps(dataset.get('options', {}), sort_keys=True)}"),
             ("sample limit", config.get("limit") or "none"), ("metric mode", config.get("metrics", {}).get("mode"))]
    samples = manifest.get("samples") or {}
    if samples:
        facts.append(("samples", f"{len(samples.get('fakes', []))} fakes attacked, {len(samples.get('reals', []))} reals"))
    known = {"matrix", "run_id", "created", "git_commit", "seed", "torch_device_count"}
    for key, value in manifest.items():
        if key not in known | SHOWN_APART | FOR_MACHINES and not isinstance(value, dict):
            facts.append((key.replace("_", " "), value))
    return [(label, "n/a" if value is None else str(value)) for label, value in facts]


def extra_blocks(manifest: dict) -> dict[str, dict]:
    """Dict-valued manifest entries beyond the known ones (hardware, ...), shown as key/value tables."""
    blocks = {key.replace("_", " "): value for key, value in manifest.items()
              if isinstance(value, dict) and key not in SHOWN_APART | FOR_MACHINES}
    entries = (manifest.get("fingerprints") or {}).get("entries")
    if entries:  # which version of each registry entry computed the numbers
        blocks["entry versions"] = entries
    return blocks


def table_sections(store: RunStore, budget: ImageBudget, mode: str) -> dict[str, Section]:
    from bench.report import footnotes_of, heatmap, titles, views

    sections = {sid: Section(sid, heading) for sid, heading, _ in SECTIONS}
    named = titles(store)  # the views' own titles (a leaderboard's carries its budget)
    recorded = footnotes_of(store)  # n/a reasons stored per sample
    with tempfile.TemporaryDirectory() as scratch:
        for stem, frame in views(store).items():
            item = Item(build_table(stem, frame, mode, recorded.get(stem)))
            if stem.startswith("leaderboard") and stem in named:
                item.table.title = named[stem]
            if is_matrix(frame):
                png = store.figures_dir / f"{stem}.png"
                if not png.is_file():  # a run folder without its figures: draw it from the view
                    png = heatmap(frame, f"transfer ASR: {stem[4:]}", Path(scratch) / f"{stem}.png")
                item.figure = budget.embed(png, stem, store.root)
            sections[section_of(stem, frame)].items.append(item)
    # the matrices first, then the long-form tables of the same section
    sections["matrices"].items.sort(key=lambda item: item.figure is None)
    return sections


def figure_sections(store: RunStore, budget: ImageBudget, used: set[str]) -> tuple[Section, dict[str, list[Item]]]:
    """The explanation grids, and every other figure of the run by the section it belongs to."""
    records = store.records()
    latent = set(records.loc[records["attack_kind"] == "latent", "attack"]) if "attack_kind" in records else set()
    explain = Section("explanations", "Explanations")
    for png in sorted((store.figures_dir / "explain").glob("*.png")):
        source, _, attack = png.stem.partition("__")
        columns = EXPLAIN_COLUMNS.format(inversion="inversion | " if attack in latent else "")
        explain.items.append(Item(figure=budget.embed(png, png.stem, store.root),
                                  caption=f"source {source}, attack {attack}: {columns}."))
    others: dict[str, list[Item]] = {}
    for png in sorted(store.figures_dir.rglob("*.png")):
        name = png.relative_to(store.figures_dir).with_suffix("").as_posix()  # e.g. sweep/eps
        if name in used or name.startswith("explain/"):
            continue
        section = next((sid for sid, prefixes in FIGURE_SECTIONS if name.startswith(prefixes)), "more")
        prefix = next((p for p in FIGURE_CAPTIONS if name.startswith(p)), None)
        caption = (FIGURE_CAPTIONS[prefix].format(rest=name.removeprefix(prefix)) if prefix
                   else name.replace("_", " ").replace("/", ": "))
        others.setdefault(section, []).append(Item(figure=budget.embed(png, name, store.root), caption=caption))
    return explain, others


def page_context(store: RunStore) -> dict:
    manifest = store.manifest
    config = manifest.get("config", {})
    mode = config.get("metrics", {}).get("mode", "paper")
    budget = ImageBudget()
    finished = store.records_path.is_file()
    sections: list[Section] = []
    if finished:
        by_id = table_sections(store, budget, mode)
        used = {item.figure.name for s in by_id.values() for item in s.items if item.figure}
        explain, others = figure_sections(store, budget, used)
        for sid, items in others.items():
            by_id[sid].items.extend(items)
        order = [sid for sid, _, _ in SECTIONS]
        order.insert(order.index("ablations"), "explanations")
        by_id["explanations"] = explain
        sections = [by_id[sid] for sid in order if by_id[sid].items]
    checkpoints = [(key, entry.get("path", ""), entry.get("sha256", ""))
                   for key, entry in sorted(manifest.get("checkpoints", {}).items())]
    return {
        "manifest": manifest,
        "facts": run_facts(manifest),
        "extra_blocks": extra_blocks(manifest),
        "versions": sorted(manifest.get("versions", {}).items()),
        "checkpoints": checkpoints,
        "note": config.get("report", {}).get("note", ""),
        "finished": finished,
        "started": has_shards(store),
        "progress": shard_progress(store),
        "explanation_pending": finished and explanation_pending(store),
        "sections": sections,
        "legend": legend_stops(),
        "colormap": ASR_COLORMAP,
        "matrix_caption": MATRIX_CAPTION,
        "bound": {"side": MAX_SIDE, "image_kb": MAX_IMAGE_BYTES // 1000, "budget_mb": IMAGE_BUDGET_BYTES / 1e6,
                  "used_mb": budget.used / 1e6},
    }


def render_report(store: RunStore) -> str:
    """The page's HTML text."""
    from jinja2 import Environment, StrictUndefined

    template_text = resources.files("bench.html_report").joinpath("page.html.j2").read_text(encoding="utf-8")
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template_text).render(**page_context(store))


def write_report(store: RunStore, to: Path | None = None) -> Path:
    """Write the run's page (default ``<run folder>/report.html``) atomically and return its path."""
    path = Path(to) if to is not None else store.root / "report.html"
    text = render_report(store)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path
