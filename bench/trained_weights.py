"""A matrix's detector checkpoint ``NAME.pth`` may be a detector trained here instead.

The paper matrices name the publishers' files (``celebdf_xception.pth``, a torch state dict);
``bench train-detector`` writes ``NAME.safetensors`` with a JSON sidecar. When the ``.pth`` file
is absent and ``NAME.safetensors`` lies beside it, the matrix uses that, and says so, so a
detector trained with ``--out $ARTIFACT_BENCH_WEIGHTS/celebdf_xception.safetensors`` drops into
the shipped matrix without editing it.
"""

from __future__ import annotations

from pathlib import Path

from bench.config import MatrixConfig
from bench.progress import say

PUBLISHED_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def trained_alternative(path: str) -> Path | None:
    """``NAME.safetensors`` for a missing ``NAME.pth`` (or .pt/.bin/.ckpt) when it exists, else None."""
    given = Path(path).expanduser()
    if given.suffix not in PUBLISHED_SUFFIXES or given.exists():
        return None
    alternative = given.with_suffix(".safetensors")
    return alternative if alternative.is_file() else None


def use_trained_weights(cfg: MatrixConfig, quiet: bool = False) -> MatrixConfig:
    """Point every detector whose checkpoint is missing at its trained ``.safetensors`` twin."""
    for spec in cfg.detectors:
        value = spec.kwargs.get("checkpoint")
        alternative = trained_alternative(value) if isinstance(value, str) else None
        if alternative is not None:
            spec.kwargs["checkpoint"] = str(alternative)
            say(f"detectors.{spec.label}: {value} not found; using {alternative} (bench train-detector)", quiet)
    return cfg
