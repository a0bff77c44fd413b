"""Rich progress bars and console output, silenced by ``--quiet``."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


@contextmanager
def progress_bar(quiet: bool = False):
    """A progress bar with ETA; disabled under --quiet (and invisible when stderr is no TTY)."""
    progress = Progress(TextColumn("[bold]{task.description:<38.38}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=console, disable=quiet or not sys.stderr.isatty(), transient=False)
    with progress:
        yield progress


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message, highlight=False)
