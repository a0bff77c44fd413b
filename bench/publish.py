"""Whether a finished `bench run` writes its matrix's section of BENCHMARK.md.

The section is the published result of the matrix as shipped. A run whose ``--limit`` differs
from the matrix's own ``limit`` attacked a different sample set, so it leaves the published
section alone unless the user names the file (``--benchmark-md``) or publishes on purpose with
``bench export RUN --to BENCHMARK.md``.
"""

from __future__ import annotations

from pathlib import Path

from bench.config import MatrixConfig
from bench.progress import say
from bench.store import RunStore


def is_partial(cfg: MatrixConfig, cli_limit: int | None) -> bool:
    """A ``--limit`` that changes the matrix's own sample count."""
    return cli_limit is not None and cli_limit != cfg.limit


def publish_target(store: RunStore, cfg: MatrixConfig, cli_limit: int | None, benchmark_md: Path | None,
                   quiet: bool = False) -> Path | None:
    """The BENCHMARK.md the render stage writes the run's section into, or None (a run without a
    section, or a --limit run that deliberately leaves the published one alone, with one line)."""
    section = cfg.report.get("benchmark_section")
    if not section:
        return None
    if benchmark_md is None and is_partial(cfg, cli_limit):
        say(f"BENCHMARK.md section '{section}' left unchanged: this is a --limit {cli_limit} run "
            f"(publish it on purpose with `bench export {store.root} --to BENCHMARK.md`)", quiet)
        return None
    return benchmark_md or Path("BENCHMARK.md")
