"""`bench report RUN_DIR`: the run as one self-contained HTML page (also written by `bench run`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., help="a run folder results/<matrix>/<run-id>, finished or not"),
        to: Path | None = typer.Option(None, "--to", help="the HTML file to write (default: RUN_DIR/report.html)"),
    ) -> None:
        """Write one HTML file with the run's header, tables, matrices and figures; it opens offline."""
        from bench.errors import UserError
        from bench.html_report import write_report
        from bench.store import RunStore

        store = RunStore.open(run_dir)
        if to is not None and to.is_dir():
            raise UserError(f"--to {to} is a folder; give a file path such as {to / 'report.html'}")
        print(write_report(store, to))
