"""How the ``bench`` command ends: one ``error:`` line and exit 2 for anything the user caused,
one line and exit 130 on Ctrl-C, never a traceback for either.

typer 0.29 vendors its own copy of click (``typer._click``) and raises that copy's exception
classes, which are not subclasses of the installed ``click``'s; older typer versions raise the
installed click's. Both families are recognised, so the CLI behaves the same on either.
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

from bench.errors import UserError

INTERRUPTED_EXIT = 130
USAGE_EXIT = 2


def _click_modules() -> list:
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _classes(attr: str) -> tuple[type, ...]:
    return tuple(getattr(m, attr) for m in _click_modules() if hasattr(m, attr))


def resume_hint(argv: list[str] | None) -> str:
    command = " ".join(["bench", *(sys.argv[1:] if argv is None else argv)])
    return f"interrupted: finished shards are kept; run the same command again to resume: {command}"


def interrupted(argv: list[str] | None) -> NoReturn:
    print(resume_hint(argv), file=sys.stderr)
    sys.exit(INTERRUPTED_EXIT)


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_EXIT)


def usage_message(exc: BaseException) -> str:
    """A click/typer usage error as one line: 'Invalid value for '--limit': ...' plus where to look."""
    text = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "bench"
    return f"{text} (see `{command} --help`)"


def handle(exc: BaseException, argv: list[str] | None) -> NoReturn:
    """End the process for ``exc`` raised by the typer app in non-standalone mode."""
    from bench.registry import UnknownNameError

    if isinstance(exc, (UserError, UnknownNameError)):
        fail(str(exc))
    if isinstance(exc, KeyboardInterrupt) or isinstance(exc, _classes("Abort")):
        interrupted(argv)
    if isinstance(exc, _classes("ClickException")):
        fail(usage_message(exc))
    if isinstance(exc, OSError) and exc.filename is not None:
        # a disk that fills up or a folder that cannot be written, met mid-run
        fail(f"{exc.filename}: {exc.strerror or exc}")
    raise exc
