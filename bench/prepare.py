"""Prepare hooks: work a matrix needs done before it can be read, named in its ``prepare`` list.

A hook may build data or models and export environment variables that the matrix then uses as
``${VAR}``. Hooks are looked up by name here so that matrix files stay data.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.errors import UserError

HOOKS = {
    "demo_world": "bench.demo_models:prepare_demo_world",
}


def run_prepare_hooks(names: list[str], path: Path, quiet: bool = False) -> None:
    for name in names:
        if name not in HOOKS:
            raise UserError(f"{path}: unknown prepare hook {name!r}; known: {', '.join(sorted(HOOKS))}")
        module, func = HOOKS[name].split(":")
        getattr(importlib.import_module(module), func)(quiet=quiet)
