"""Progress reporting and console output: a rich bar on a terminal, timed plain lines in logs
(SLURM, ``| tee``, CI), nothing under ``--quiet``. All three take the same calls
(``add_task``, ``advance``, ``update``), so long loops need not know where they report to."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

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

# seconds between two plain progress lines of one task in a log (ARTIFACT_BENCH_LOG_EVERY)
DEFAULT_LOG_EVERY = 30.0


@contextmanager
def progress_bar(quiet: bool = False):
    """A progress bar with ETA when stderr is a terminal; otherwise a line per task every
    ``$ARTIFACT_BENCH_LOG_EVERY`` seconds (and at the end); silent under ``quiet``."""
    if quiet:
        yield SilentProgress()
    elif not sys.stderr.isatty():
        yield LogProgress(float(os.environ.get("ARTIFACT_BENCH_LOG_EVERY", DEFAULT_LOG_EVERY)))
    else:
        progress = Progress(TextColumn("[bold]{task.description:<38.38}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        with progress:
            yield progress


class SilentProgress:
    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        pass

    def update(self, task: int, **_) -> None:
        pass


@dataclass
class _LogTask:
    description: str
    total: float | None
    completed: float
    start_completed: float
    started: float
    last_line: float = float("-inf")


class LogProgress:
    """Plain progress lines, ``desc: 12/40 (30%) elapsed 1:02 ETA 2:25``, at most one per task
    every ``every`` seconds, plus the line that completes the task."""

    def __init__(self, every: float = DEFAULT_LOG_EVERY, stream=None):
        self.every, self.stream = every, stream
        self.tasks: list[_LogTask] = []

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        self.tasks.append(_LogTask(description, total, completed, completed, time.monotonic()))
        return len(self.tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, description: str | None = None, advance: float = 0,
               completed: float | None = None, **_) -> None:
        t = self.tasks[task]
        if description is not None:
            t.description = description
        t.completed = completed if completed is not None else t.completed + advance
        now = time.monotonic()
        finished = t.total is not None and t.completed >= t.total
        if (advance or completed is not None) and (finished or now - t.last_line >= self.every):
            t.last_line = now
            print(self.line(t, now), file=self.stream or sys.stderr, flush=True)

    @staticmethod
    def line(t: _LogTask, now: float) -> str:
        elapsed = now - t.started
        if t.total is None:
            return f"{t.description}: {t.completed:g} elapsed {_clock(elapsed)}"
        done_here = t.completed - t.start_completed  # work resumed from a cache does not set the pace
        eta = elapsed / done_here * (t.total - t.completed) if done_here > 0 else None
        pct = 100 * t.completed / t.total if t.total else 100
        return (f"{t.description}: {t.completed:g}/{t.total:g} ({pct:.0f}%) elapsed {_clock(elapsed)} "
                f"ETA {_clock(eta) if eta is not None else '?'}")


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message, highlight=False, soft_wrap=True)  # one message, one line, at any width
