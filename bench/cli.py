"""The ``bench`` command. Every user error ends in one clear line and exit code 2."""

from __future__ import annotations

import importlib
import math
import pkgutil
import sys
import time
from pathlib import Path

import typer

from bench.cli_options import trust_checkpoint_option
from bench.errors import UserError
from bench.progress import console, say

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="artifact-bench: adversarial robustness of face-forgery detectors.")


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:  # plain `bench` runs the embedded default
        run(matrix=None, out=Path("results"), limit=None, device=None, fresh=False, quiet=False,
            benchmark_md=None, distributed=None, threads=None, allow_compute_change=False,
            trust_checkpoint=False, no_explain=False, allow_version_change=False)


@app.command("list")
def list_registries() -> None:
    """Every registry (detectors, attacks, datasets, metrics) with each entry's origin."""
    from rich.table import Table

    from bench.registry import ALL

    for kind, registry in ALL.items():
        table = Table(title=kind, title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("origin")
        table.add_column("presets")
        table.add_column("description")
        for entry in registry.entries():
            table.add_row(entry.name, entry.origin, ", ".join(sorted(entry.presets)), entry.help)
        for name, error in registry.broken.items():
            table.add_row(f"[red]{name}[/red]", "[red]failed to load[/red]", "", error)
        for name in registry.conflicts:
            table.add_row(f"[red]{name}[/red]", "[red]registered twice[/red]", "", registry.conflict_message(name))
        console.print(table) if sys.stdout.isatty() else _plain_table(kind, registry)
    _print_checkpoint_sources()


def _print_checkpoint_sources() -> None:
    """The published checkpoint formats each detector family reads (its presets of the same name)."""
    from detectors.sources import describe_sources

    print("== detector checkpoint sources (create_detector(FAMILY, preset=SOURCE, checkpoint=FILE))")
    for line in describe_sources():
        print(line)


def _plain_table(kind, registry) -> None:
    print(f"== {kind}")
    for entry in registry.entries():
        presets = f" [presets: {', '.join(sorted(entry.presets))}]" if entry.presets else ""
        print(f"{entry.name:<20} {entry.origin:<40} {entry.help}{presets}")
    for name, error in registry.broken.items():
        print(f"{name:<20} FAILED TO LOAD: {error}")
    for name in registry.conflicts:
        print(f"{name:<20} REGISTERED TWICE: {registry.conflict_message(name)}")


@app.command()
def run(
    matrix: str | None = typer.Option(None, "--matrix", "-m", help="matrix NAME (bench/matrices) or YAML path; default: demo"),
    out: Path = typer.Option(Path("results"), "--out", help="output root; the run goes to OUT/<matrix>/<run-id>"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="attack at most N fake samples"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (overrides the matrix)"),
    fresh: bool = typer.Option(False, "--fresh", help="discard this run's stored shards and start over"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    benchmark_md: Path | None = typer.Option(None, "--benchmark-md", help="BENCHMARK.md to update (default: the matrix's report.benchmark_section goes to ./BENCHMARK.md)"),
    distributed: bool | None = typer.Option(None, "--distributed/--no-distributed", help="split the shards over the ranks of a torchrun/srun launch (default: detect torchrun)"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads per process/rank (overrides the matrix's threads:, default 1); part of the run's compute settings"),
    allow_compute_change: bool = typer.Option(False, "--allow-compute-change", help="resume under other threads/device type/deterministic by recomputing the shards computed otherwise, instead of refusing"),
    trust_checkpoint: bool = trust_checkpoint_option(),
    no_explain: bool = typer.Option(False, "--no-explain", help="skip the matrix's explanation figures (`bench explain RUN` makes them later)"),
    allow_version_change: bool = typer.Option(False, "--allow-version-change", help="resume even though an entry's or the package's version changed since the run started (recorded in the manifest)"),
) -> None:
    """Run (or resume) a matrix: load -> prepare -> compute shards -> render tables and figures."""
    from bench.distributed import Ranks
    from bench.trust import allow_full_unpickle

    allow_full_unpickle(trust_checkpoint)

    ranks = Ranks.start(distributed)
    try:
        _run(matrix, out, limit, device, fresh, quiet, benchmark_md, ranks, threads, allow_compute_change, no_explain,
             allow_version_change)
    finally:
        if ranks is not None:
            ranks.close()


def _run(matrix, out, limit, device, fresh, quiet, benchmark_md, ranks, threads, allow_compute_change,
         no_explain=False, allow_version_change=False) -> None:
    from bench.config import load_matrix
    from bench.render import render_run
    from bench.runner import run_matrix

    started = time.time()
    if ranks is None:
        cfg = load_matrix(matrix, quiet=quiet)
    else:  # prepare hooks write shared files: rank 0 first; progress and messages on rank 0 only
        quiet = quiet or not ranks.is_main
        cfg = ranks.main_first(load_matrix, matrix, quiet=quiet)
    if cfg.report.get("placeholder") and (ranks is None or ranks.is_main):
        say(f"[yellow]{cfg.report['placeholder']}[/yellow]")
    store = run_matrix(cfg, out_root=out, limit=limit, device=device, fresh=fresh, quiet=quiet, ranks=ranks,
                       threads=threads, allow_compute_change=allow_compute_change,
                       allow_version_change=allow_version_change, render=False)
    if ranks is not None and not ranks.is_main:
        return
    from bench.publish import publish_target

    render_run(store, benchmark_md=publish_target(store, cfg, limit, benchmark_md, quiet), explain=not no_explain,
               quiet=quiet)
    say(f"run folder: {store.root}  ({time.time() - started:.0f} s)", quiet)
    print(store.root)


@app.command("render")
def render(
    run_dir: Path = typer.Argument(..., help="a run folder results/<matrix>/<run-id>"),
    benchmark_md: Path | None = typer.Option(None, "--benchmark-md", help="also write the run's BENCHMARK.md section (report.benchmark_section) into this file"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Re-render a run's tables, figures and explain grids from its folder alone (no attack runs)."""
    from bench.render import render_run
    from bench.store import RunStore

    store = RunStore.open(run_dir)
    render_run(store, benchmark_md=benchmark_md, quiet=quiet)
    say(f"rendered {store.tables_dir} and {store.figures_dir}", quiet)
    print(store.root)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="a run folder results/<matrix>/<run-id>"),
    format: str = typer.Option("md", "--format", "-f", help="csv, latex or md"),
    to: Path | None = typer.Option(None, "--to", help="write the document here (csv: each table after a line `# <name>`; tables/ has one file per table); a BENCHMARK.md gets a section instead"),
    section: str | None = typer.Option(None, "--section", help="BENCHMARK.md section name (default: the matrix name)"),
) -> None:
    """Render a run's tables from its stored records only."""
    from bench.report import FORMATS, render_benchmark_section, update_benchmark_md
    from bench.report import export as render
    from bench.store import RunStore

    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    store = RunStore.open(run_dir)
    if to is not None and (to.is_dir() or not to.parent.is_dir()):
        raise UserError(f"--to {to}: " + ("is a folder; name a file in it" if to.is_dir()
                                          else f"folder {to.parent} does not exist; create it first"))
    if to is not None and to.name == "BENCHMARK.md":
        name = section or store.manifest["matrix"]
        note = store.manifest.get("config", {}).get("report", {}).get("note", "")
        update_benchmark_md(to, name, render_benchmark_section(store, name, note))
        say(f"updated section '{name}' of {to}")
        return
    text = render(store, format)
    if to is None:
        print(text)
    else:
        to.write_text(text)
        say(f"wrote {to}")


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run folder results/<matrix>/<run-id>")) -> None:
    """Print a run's leaderboard and ASR matrices as terminal tables."""
    from rich.table import Table

    from bench.attack_health import attacked_cells, health_warnings
    from bench.dataset_stats import stored_summary
    from bench.report import fold_intervals, titles, views
    from bench.sample_counts import FOOTNOTE, cell_counts, limit_note, marked_matrix
    from bench.store import RunStore

    store = RunStore.open(run_dir)
    out = console.__class__()  # stdout console
    for line in (stored_summary(store.root), limit_note(store.manifest)):
        if line:
            out.print(line, soft_wrap=True, highlight=False, markup=False)
    tables, named = views(store), titles(store)
    for stem, frame in tables.items():
        if stem in ("asr_all", "quality_ci") or stem.startswith("under_attack"):  # long forms: tables/, report.html
            continue
        frame = fold_intervals(frame)
        if stem.startswith("asr_"):  # ASR cells resting on < 10 eligible samples carry the mark
            frame = marked_matrix(frame, cell_counts(tables["eligible"], stem[4:], frame), bold=False)
        frame = frame.reset_index()
        table = Table(title=named.get(stem, stem), title_justify="left")
        for col in frame.columns:
            table.add_column(str(col), justify="right" if frame[col].dtype.kind in "fi" else "left")
        for _, row in frame.iterrows():
            table.add_row(*[("n/a" if math.isnan(v) else f"{v:.1f}") if isinstance(v, float) else str(v) for v in row])
        out.print(table)
    if any(stem.startswith("leaderboard") and (frame["few"] != "").any() for stem, frame in tables.items()):
        out.print(FOOTNOTE, soft_wrap=True, highlight=False, markup=False)
    for line in health_warnings(attacked_cells(store.records())):  # one line per attack run
        out.print(f"warning: attack health: {line}", soft_wrap=True, highlight=False, markup=False)


def _register_commands() -> None:
    """Each module in bench/commands/ adds its own sub-command through ``register(app)``."""
    from bench import commands

    for info in pkgutil.iter_modules(commands.__path__, prefix="bench.commands."):
        importlib.import_module(info.name).register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    from bench.cli_exit import INTERRUPTED_EXIT, handle, interrupted
    from bench.cpu_allocator import keep_freed_memory
    from bench.held_warnings import hold_warnings, release_warnings

    keep_freed_memory()

    hold_warnings()  # library warnings must not come before an error line
    try:
        code = app(args=argv, standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:  # every way out becomes one line and an exit code
        handle(exc, argv)
    finally:
        release_warnings()
    # in non-standalone mode typer turns Ctrl-C into a returned 130 instead of raising
    if code == INTERRUPTED_EXIT:
        interrupted(argv)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
