"""Budget sweeps: an attack entry that gives a list for one option runs once per value.

    attacks:
      pgd: {eps: [0.004, 0.008, 0.016], step: 0.002, steps: 10}

expands, when the matrix is loaded, into the entries ``pgd@eps=0.004``, ``pgd@eps=0.008`` and
``pgd@eps=0.016``: the same registry entry with one value each, and otherwise ordinary attack
entries (own shards, traits, budget and run identity). The part before ``@`` names the sweep's
*family*, one curve in the sweep figure (``bench.sweep_figure``).

Only an option whose factory parameter is a scalar type is swept: a list given for a parameter
that takes a list (the eraser's ``levels: [0, 1, 2]``) is passed on as it is, and so is one for
a parameter of undeclared type. One swept option per entry; ``@`` is kept for sweep labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.config import ComponentSpec
from bench.errors import UserError

MARK = "@"


def sweep_label(label: str, key: str, value: Any) -> str:
    """``pgd@eps=0.008``: the display name of one value of a sweep."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return f"{label}{MARK}{key}={text}"


def parse_sweep_label(label: str) -> tuple[str, str, str] | None:
    """(family, option, value text) of a sweep entry's label; None for any other label."""
    family, mark, rest = label.partition(MARK)
    key, equals, text = rest.partition("=")
    return (family, key, text) if mark and equals else None


def expand_sweeps(specs: list[ComponentSpec], path: Path | str) -> list[ComponentSpec]:
    """Every attack entry with a swept option replaced by one entry per value, in place."""
    expanded: list[ComponentSpec] = []
    for spec in specs:
        if MARK in spec.label:
            raise UserError(f"{path}: attack name {spec.label!r} contains {MARK!r}, which marks the entries "
                            "of a budget sweep (pgd@eps=0.008); rename it")
        swept = _swept_options(spec)
        if len(swept) > 1:
            raise UserError(f"{path}: attacks.{spec.label} gives lists for {' and '.join(swept)}; a sweep "
                            "varies one option: make the others single values (or write two entries)")
        if not swept:
            expanded.append(spec)
            continue
        key = swept[0]
        values = spec.kwargs[key]
        if not values:
            raise UserError(f"{path}: attacks.{spec.label}.{key} is an empty list; a sweep needs at least "
                            "one value")
        for value in values:
            expanded.append(ComponentSpec(sweep_label(spec.label, key, value), spec.name,
                                          {**spec.kwargs, key: value}))
    _refuse_clashing_labels(expanded, path)
    return expanded


def _swept_options(spec: ComponentSpec) -> list[str]:
    """The options of ``spec`` given as a list for a parameter that takes a single value."""
    from bench.options import takes_a_list
    from bench.registry import ATTACKS, UnknownNameError

    lists = [key for key, value in spec.kwargs.items() if isinstance(value, list) and key != "preset"]
    if not lists:
        return []
    try:
        return [key for key in lists if takes_a_list(ATTACKS, spec.name, key) is False]
    except UnknownNameError:  # reported with its did-you-mean when the names are validated
        return []


def _refuse_clashing_labels(specs: list[ComponentSpec], path: Path | str) -> None:
    """Two labels that share a shard folder name (bench.store.safe_part) would share shards."""
    from bench.store import safe_part

    seen: dict[str, str] = {}
    for spec in specs:
        folder = safe_part(spec.label)
        if folder not in seen:
            seen[folder] = spec.label
        elif seen[folder] == spec.label:
            raise UserError(f"{path}: attack {spec.label!r} appears twice (a sweep value repeated?)")
        else:
            raise UserError(f"{path}: attacks {seen[folder]!r} and {spec.label!r} would share the stored "
                            f"folder {folder!r}; rename one")
