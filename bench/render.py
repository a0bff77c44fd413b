"""The render stage: everything a run shows, from its run folder alone.

``bench run`` is load -> prepare -> compute -> render; the stored records plus the manifest are
the only interface between compute and render. ``render_run`` reads the render settings (report
note, explain grids, bootstrap count) from the manifest, which ``bench run`` brings up to date
without recomputing, so ``bench render RUN_DIR`` re-renders any old run and a changed note
costs no attack.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.progress import say
from bench.store import RunStore, write_json

_EXPLAIN_STAMP = "explain-settings.json"


def render_run(store: RunStore, benchmark_md: Path | None = None, explain: bool = True,
               quiet: bool = False) -> list[Path]:
    """Tables and figures; the run's BENCHMARK.md section into ``benchmark_md`` when given;
    explain grids when the run asks for them (``explain``: allowed), after the tables and the
    section so that a figure never holds them up; last the run's one-file HTML report. Returns
    what was written beyond tables/ and figures/."""
    from bench.html_report import write_report
    from bench.report import render_tables

    written: list[Path] = []
    render_tables(store, quiet=quiet)
    config = store.manifest.get("config", {})
    section = (config.get("report") or {}).get("benchmark_section")
    if section and benchmark_md is not None:
        from bench.report import render_benchmark_section, update_benchmark_md

        update_benchmark_md(benchmark_md, section,
                            render_benchmark_section(store, section, (config.get("report") or {}).get("note", "")))
        say(f"updated section '{section}' of {benchmark_md}", quiet)
        written.append(benchmark_md)
    settings = config.get("explain") or {}
    if explain and settings:
        written += render_explain(store, settings, quiet=quiet)
    report = write_report(store)
    say(f"report: {report}", quiet)
    return [*written, report]


def render_explain(store: RunStore, settings: dict, quiet: bool = False) -> list[Path]:
    """Counterfactual grids; skipped when the grids on disk were drawn with the same settings
    from the same records (Grad-CAM of every detector is the slow part of a re-render)."""
    from bench.explain_run import explain_after_run

    stamp_path = store.figures_dir / "explain" / _EXPLAIN_STAMP
    stamp = {"settings": settings, "records": _records_stamp(store)}
    try:
        previous = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        previous = None
    if previous and previous.get("stamp") == stamp and all(Path(p).is_file() for p in previous.get("files", [])):
        return [Path(p) for p in previous["files"]]
    files = explain_after_run(store, settings, quiet=quiet)  # a failure is one line: the tables are complete
    if not files:
        return []
    write_json(stamp_path, {"stamp": stamp, "files": [str(p) for p in files]})
    return files


def _records_stamp(store: RunStore) -> str:
    from bench.shards import stored_checksum

    return stored_checksum(store.records_path)
