"""Prepare hooks: work a matrix needs done before it can run, named in its ``prepare`` list.

A hook may build data or models; it returns a value that is substituted into the matrix as the
``${VAR}`` the hook provides. Nothing passes through ``os.environ``: the prepare stage of
``bench run`` (load -> prepare -> compute -> render) hands the values to the parser. Hooks are
looked up by name here so that matrix files stay data.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError


@dataclass(frozen=True)
class Hook:
    target: str  # "module:function(quiet=...) -> value"
    provides: str  # the ${VAR} the matrix uses for the returned value


HOOKS = {
    "demo_world": Hook("bench.demo_models:prepare_demo_world", "ARTIFACT_BENCH_DEMO_MODELS"),
}


def check_hooks(names: list, path: Path) -> list[str]:
    """The ${VARS} the hooks will provide; unknown hook names are an error (nothing is run)."""
    if not isinstance(names, list):
        raise UserError(f"{path}: key 'prepare' must be a list of hook names, got {names!r}")
    for name in names:
        if name not in HOOKS:
            raise UserError(f"{path}: unknown prepare hook {name!r}; known: {', '.join(sorted(HOOKS))}")
    return [HOOKS[name].provides for name in names]


def run_prepare_hooks(names: list[str], path: Path, quiet: bool = False) -> dict[str, str]:
    """Run each hook; ``{VAR: value}`` for the matrix."""
    check_hooks(names, path)
    values = {}
    for name in names:
        module, func = HOOKS[name].target.split(":")
        values[HOOKS[name].provides] = str(getattr(importlib.import_module(module), func)(quiet=quiet))
    return values
