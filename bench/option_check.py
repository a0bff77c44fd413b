"""Which keyword options a registered factory accepts, so a matrix naming one it does not
(``frames_per_video`` for a video dataset) fails before any work with one line, not a traceback.

Factories that forward ``**options`` to the class they return (``celebdf(...) ->
VideoFaceDataset``) accept that class's keyword options too; the return annotation says which.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable
from typing import Any

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepted_options(factory: Callable[..., Any]) -> set[str] | None:
    """The option names ``factory`` takes, or None when it takes any (``**kwargs`` going nowhere known)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    names = {p.name for p in params if p.kind in _NAMED and p.name != "self"}
    if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
        return names
    try:
        returned = typing.get_type_hints(factory).get("return")
    except Exception:  # an annotation that does not resolve: nothing to check against
        return None
    if not isinstance(returned, type) or returned.__init__ is object.__init__:
        return None
    init = inspect.signature(returned.__init__).parameters.values()
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in init):
        return None
    # the factory fills the class's required arguments itself; its keyword defaults are the options
    forwarded = {p.name for p in init if p.kind in _NAMED and p.default is not inspect.Parameter.empty}
    return names | forwarded


def unknown_option_message(kind: str, name: str, factory: Callable[..., Any], options: dict[str, Any]) -> str | None:
    """One line naming the first option ``factory`` does not take, with a suggestion; None if all are known."""
    accepted = accepted_options(factory)
    if accepted is None:
        return None
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            return f"unknown option {key!r} of {kind} {name!r}.{hint} Its options: {', '.join(sorted(accepted))}"
    return None


def check_dataset_options(name: str, options: dict[str, Any], where: str = "") -> None:
    """Raise a one-line ``UserError`` when dataset ``name`` does not take one of ``options``."""
    from bench.errors import UserError
    from bench.registry import DATASETS

    problem = unknown_option_message("dataset", name, DATASETS.get(name).factory, options)
    if problem:
        raise UserError(f"{where}: {problem}" if where else problem)
