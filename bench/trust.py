"""Whether this process may fully unpickle checkpoints, which runs code stored in the file.

Checkpoints load weights-only (or from safetensors). A file that needs arbitrary unpickling is
loaded only when the command being run was given ``--trust-checkpoint``: the flag sets the
process-level switch below, and nothing else does. A matrix option, a manifest entry or a
factory keyword can never turn it on, because a matrix or a run folder may come from someone
else; a ``trust_checkpoint`` option found in either is an error that points to the flag.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.errors import UserError

FLAG = "--trust-checkpoint"
OPTION = "trust_checkpoint"
FLAG_HELP = "fully unpickle checkpoints that need it (runs code stored in the file: only files you trust)"

_allowed = False


def allow_full_unpickle(enabled: bool) -> None:
    """Called by the CLI with the value of ``--trust-checkpoint``; nothing else may call it."""
    global _allowed
    _allowed = bool(enabled)


def full_unpickle_allowed() -> bool:
    return _allowed


@contextlib.contextmanager
def trusted_checkpoints() -> Iterator[None]:
    """The Python equivalent of ``--trust-checkpoint`` for one block (notebooks, tests)."""
    previous = _allowed
    allow_full_unpickle(True)
    try:
        yield
    finally:
        allow_full_unpickle(previous)


def refuse_trust_option(options: Mapping[str, Any], where: str) -> None:
    """A ``trust_checkpoint`` key in user data (a matrix, a manifest, ``--opt``) is an error."""
    if OPTION in options:
        raise UserError(f"{where}: '{OPTION}' is not an option; full unpickling runs code from the file and is "
                        f"allowed only by passing {FLAG} to the command")


def refuse_requested_trust(requested: bool) -> None:
    """Loaders keep their ``trust_checkpoint`` keyword for old callers; it cannot grant trust."""
    if requested and not _allowed:
        raise UserError(f"'{OPTION}=True' cannot enable full unpickling; pass {FLAG} to the command "
                        "(Python: `with bench.trust.trusted_checkpoints():`)")


def load_fully(path: str | Path, load: Callable[[str | Path], Any]) -> Any:
    """Run ``load(path)`` (a full unpickle) if the flag allows it, announcing it on stderr."""
    if not _allowed:
        raise UserError(f"checkpoint {str(path)!r} needs arbitrary code to unpickle and was refused; if you "
                        f"trust its source, pass {FLAG}")
    print(f"warning: {FLAG}: fully unpickling {path} (this runs code stored in the file)", file=sys.stderr)
    return load(path)
