"""Hold Python warnings (torch's, timm's, ...) back while a command checks its inputs.

A user error must be the first thing on stderr, not the third line after two library warnings
about deprecated arguments. ``main`` holds warnings from the start; the runner releases them
once the up-front checks have passed and the run folder exists, and ``main`` releases whatever
is left when the command ends, after its error line. Released warnings print one line each.
"""

from __future__ import annotations

import sys
import warnings

_held: tuple[warnings.catch_warnings, list[warnings.WarningMessage]] | None = None


def hold_warnings() -> None:
    global _held
    if _held is None:
        manager = warnings.catch_warnings(record=True)  # keeps the active filters; only defers output
        _held = (manager, manager.__enter__())


def release_warnings() -> None:
    global _held
    if _held is None:
        return
    manager, caught = _held
    _held = None
    manager.__exit__(None, None, None)
    for w in caught:
        print(f"warning: {w.category.__name__}: {w.message}", file=sys.stderr)
