"""Every example in README.md and docs/*.md, checked against the code (tests/test_docs_examples.py).

Fenced blocks by language: ``yaml`` must parse, and a matrix (dataset + detectors + attacks)
must pass ``parse_matrix`` and ``validate_names`` (registry names, presets, dataset options);
``toml`` must parse; ``python`` must compile and its ``from X import Y`` lines must import.
Every ``bench`` command line (in any other block, and in inline code spans) must name an
existing sub-command and only options that sub-command has.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"(?<!`)`([^`\n][^`]*?)`(?!`)")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fenced_blocks(path: Path, text: str | None = None) -> list[Block]:
    text = path.read_text() if text is None else text
    return [Block(path, text.count("\n", 0, m.start()) + 1, m.group(1).lower(), m.group(2))
            for m in FENCE.finditer(text)]


def inline_commands(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """``bench ...`` code spans outside fenced blocks, as (line, command)."""
    text = path.read_text() if text is None else text
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    found = []
    for m in INLINE.finditer(prose):
        span = " ".join(m.group(1).split()).replace("\\|", "|")
        if bench_invocation(span) is not None:
            found.append((prose.count("\n", 0, m.start()) + 1, span))
    return found


def shell_commands(text: str) -> list[str]:
    """Commands of a shell block: continuation lines joined, comments dropped, split at && and ;."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        commands += [part.strip() for part in re.split(r"&&|;", line) if part.strip()]
    return commands


def bench_invocation(command: str) -> tuple[str | None, list[str]] | None:
    """(sub-command or None for plain ``bench``, options) of a command that runs bench, else None."""
    tokens = command.split()
    for i, token in enumerate(tokens):
        runs_bench = token == "bench" and (i == 0 or tokens[i - 1] in ("--no-python", "srun", "exec")
                                           or tokens[i - 1].startswith("--ntasks"))
        runs_module = token == "bench.cli" and i > 0 and tokens[i - 1] == "-m"
        if runs_bench or runs_module:
            rest = tokens[i + 1:]
            sub = rest[0] if rest and not rest[0].startswith(("-", "[")) else None
            args = " ".join(rest[1:] if sub else rest)
            return sub, [o.split("=")[0] for o in OPTION.findall(args)]
    return None


def cli_options() -> dict[str | None, set[str]]:
    """Sub-command -> its option names (None: the root command)."""
    import typer

    from bench.cli import app

    group = typer.main.get_command(app)
    table: dict[str | None, set[str]] = {None: {"--help"}}
    for name, command in group.commands.items():
        names = {"--help"}
        for param in command.params:
            names.update(param.opts)
            names.update(param.secondary_opts)
        table[name] = names
    return table


def check_bench_command(command: str, options: dict[str | None, set[str]]) -> str | None:
    """A problem with one bench command line, or None."""
    call = bench_invocation(command)
    if call is None:
        return None
    sub, used = call
    if sub not in options:
        return f"`{command}`: bench has no sub-command {sub!r} (it has: {', '.join(sorted(filter(None, options)))})"
    unknown = [o for o in used if o not in options[sub]]
    if unknown:
        return f"`{command}`: `bench {sub or ''}` has no option {unknown[0]}"
    return check_dataset_opts(command)


def check_dataset_opts(command: str) -> str | None:
    """``--dataset NAME --opt KEY=VALUE``: KEY must be an option of the registered dataset NAME."""
    from bench.options import unknown_option
    from bench.registry import DATASETS

    name = re.search(r"--dataset[ =](\S+)", command)
    if not name or name.group(1) not in DATASETS:
        return None  # a placeholder such as NAME
    keys = {key: None for key in re.findall(r"--(?:opt|val-opt|dataset-opt)[ =](\w+)=", command)}
    problem = unknown_option(DATASETS, name.group(1), keys)
    return f"`{command}`: {problem}" if problem else None


def check_python(block: Block) -> str | None:
    try:
        tree = ast.parse(block.text)
    except SyntaxError as exc:
        return f"{block.where}: python block does not parse ({exc.msg}, line {exc.lineno})"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    return f"{block.where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
    return None


def is_matrix(data: object) -> bool:
    return isinstance(data, dict) and {"dataset", "detectors", "attacks"} <= set(data)


def env_names(text: str) -> set[str]:
    return set(ENV.findall(text))
