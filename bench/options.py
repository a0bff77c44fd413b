"""Component options checked against their factory's signature, before any work.

An entry's options are the parameters of its factory; a factory that takes ``**kwargs`` names
where they go with ``accepts=`` at registration (a class counts with the parameters of every
``__init__`` up its MRO that it forwards ``**kwargs`` to). ``check_options`` turns a misspelt
name into a did-you-mean and a wrong type into one line; ``resolve_options`` expands the preset
and fills every default, which is what a run's identity hashes (``bench.identity``).
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from bench.errors import UserError
from bench.registry import Entry, Registry

_SKIP = {"self", "cls"}


def _init_chain(cls: type) -> list[Callable]:
    """A class's ``__init__`` and, while it forwards ``**kwargs``, its parents' ``__init__``s."""
    chain = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        chain.append(init)
        if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    return chain


def _callables(entry: Entry) -> tuple[list[Callable], bool]:
    """(the callables whose parameters are the options, whether the set is open-ended)."""
    targets: list[Callable] = []
    for item in (entry.factory, *entry.accepts):
        targets += _init_chain(item) if isinstance(item, type) else [item]
    params = [p for t in targets for p in inspect.signature(t).parameters.values()]
    open_ended = not entry.accepts and any(p.kind is p.VAR_KEYWORD for p in params)
    return targets, open_ended


def parameters(entry: Entry) -> tuple[dict[str, tuple[inspect.Parameter, Any]], bool]:
    """name -> (parameter, its evaluated annotation or None), and whether unknown names pass."""
    targets, open_ended = _callables(entry)
    found: dict[str, tuple[inspect.Parameter, Any]] = {}
    for target in targets:
        try:
            hints = typing.get_type_hints(target)
        except Exception:  # an annotation that does not evaluate: skip type checks for it
            hints = {}
        for name, param in inspect.signature(target).parameters.items():
            if name in _SKIP or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or name in found:
                continue
            found[name] = (param, hints.get(name))
    return found, open_ended


def _accepts(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a type hint; hints this cannot judge pass."""
    if hint is None or hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    base = origin or hint
    if base in (list, tuple, typing.Sequence) or (isinstance(base, type) and base.__name__ == "Sequence"):
        return isinstance(value, (list, tuple))
    if base is dict or (isinstance(base, type) and base.__name__ == "Mapping"):
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if typing.get_origin(hint) is None else None
    return text or str(hint).replace("typing.", "").replace("collections.abc.", "")


def unknown_option(registry: Registry, name: str, keys: Iterable[str]) -> str | None:
    """The first of ``keys`` that entry ``name`` does not take, as one message with a
    did-you-mean; None when it takes them all."""
    known, open_ended = parameters(registry.get(name))
    for key in keys:
        if key != "preset" and key not in known and not open_ended:
            close = difflib.get_close_matches(key, list(known), n=2, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            return (f"unknown option {key!r} for {registry.kind[:-1]} {name!r}.{hint} "
                    f"Options: {', '.join(sorted(known)) or 'none'}")
    return None


def check_options(registry: Registry, name: str, options: dict[str, Any], where: str) -> None:
    """Every option name known (did-you-mean otherwise) and of its annotated type."""
    problem = unknown_option(registry, name, options)
    if problem:
        raise UserError(f"{where}: {problem}")
    known, _ = parameters(registry.get(name))
    for key, value in options.items():
        if key == "preset" or key not in known:
            continue
        hint_type = known[key][1]
        if not _accepts(value, hint_type):
            raise UserError(f"{where}.{key} must be {_type_name(hint_type)}, got {value!r} "
                            f"({type(value).__name__})")


def resolve_options(registry: Registry, name: str, options: dict[str, Any], where: str,
                    fill_defaults: bool = True) -> dict[str, Any]:
    """The options a component is built with: preset expanded, explicit values on top, checked;
    with ``fill_defaults`` also every factory default (the form the run identity hashes)."""
    from bench.registry import UnknownNameError

    try:
        expanded = registry.resolve_kwargs(name, options)
    except UnknownNameError as exc:
        raise UserError(f"{where}: {exc}") from None
    check_options(registry, name, options, where)  # the names the user wrote, with their spelling
    check_options(registry, name, expanded, f"{where} (after its preset)")
    if not fill_defaults:
        return expanded
    known, _ = parameters(registry.get(name))
    filled = {key: _plain(param.default) for key, (param, _hint) in known.items()
              if param.default is not inspect.Parameter.empty and key not in expanded and _is_data(param.default)}
    return dict(sorted({**filled, **expanded}.items()))


def _is_data(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, tuple, dict))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def takes_a_list(registry: Registry, name: str, key: str) -> bool | None:
    """Whether option ``key`` of entry ``name`` accepts a list (the eraser's ``levels``); None
    when the factory does not declare the option's type (or does not take it)."""
    known, _ = parameters(registry.get(name))
    hint = known[key][1] if key in known else None
    if hint is None or hint is Any:
        return None
    return _accepts([], hint)
