"""`bench explain RUN_DIR`: counterfactual figures (residuals and Grad-CAM) of a finished run."""

from __future__ import annotations

from pathlib import Path

import typer

from bench.cli_options import trust_checkpoint_option
from bench.explain_run import DEFAULT_N


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain(
        run_dir: Path = typer.Argument(..., help="a run folder results/<matrix>/<run-id>"),
        source: str | None = typer.Option(None, "--source", help="only this source detector"),
        attack: str | None = typer.Option(None, "--attack", help="only this attack"),
        n: int = typer.Option(DEFAULT_N, "--n", min=1, help="samples per figure (successful ones first)"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
        trust_checkpoint: bool = trust_checkpoint_option(),
    ) -> None:
        """Write figure grids: original | inversion | adversarial | residual | Grad-CAM per detector."""
        from bench.explain_run import explain_run
        from bench.store import RunStore
        from bench.trust import allow_full_unpickle

        allow_full_unpickle(trust_checkpoint)

        for path in explain_run(RunStore.open(run_dir), source=source, attack=attack, n=n, quiet=quiet):
            print(path)
