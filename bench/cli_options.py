"""Repeatable ``--opt KEY=VALUE`` command-line options, shared by the sub-commands."""

from __future__ import annotations

from typing import Any

from bench.errors import UserError


def parse_options(pairs: list[str] | None, flag: str = "--opt") -> dict[str, Any]:
    """``["n=64", "split=train"]`` -> ``{"n": 64, "split": "train"}`` (values read as YAML scalars)."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} {pair!r} is not key=value (KEY=VALUE); write e.g. {flag} n=64")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


def trust_checkpoint_option() -> Any:
    """``--trust-checkpoint``: the only way to let this command fully unpickle a checkpoint."""
    import typer

    from bench.trust import FLAG, FLAG_HELP

    return typer.Option(False, FLAG, help=FLAG_HELP)
