"""Check every input file a matrix names before any work starts.

A paper matrix needs a dataset tree and several official checkpoints. Rather than failing on
the first one an hour into a run, ``check_inputs`` lists everything that is missing at once:
the dataset adapter's own required files (``missing_files`` of its module) and every detector,
attack or identity option that names a file. A matrix may describe its files in a top-level
``files:`` mapping (path -> {what, where}) so the message says what each is and where the
official release publishes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.config import MatrixConfig
from bench.errors import UserError

FILE_KEYS = ("checkpoint", "weights", "model_path", "root", "encoder_checkpoint", "generator_checkpoint",
             "backbone_weights")


def _named_files(options: dict[str, Any], where: str) -> list[tuple[str, str]]:
    return [(str(value), f"{where}.{key}") for key, value in options.items()
            if key in FILE_KEYS and isinstance(value, str) and value]


def missing_inputs(cfg: MatrixConfig) -> list[tuple[str, str, str]]:
    """(path, what, where published) for every required input that does not exist."""
    from bench.data.layout import missing_files

    missing: list[tuple[str, str, str]] = []
    root = cfg.dataset.options.get("root")
    if root is not None:
        for item in missing_files(cfg.dataset.name, root):
            missing.append((item.path, item.what, item.where_published))
    named = []
    for spec in cfg.detectors:
        named += _named_files(spec.kwargs, f"detectors.{spec.label}")
    for spec in cfg.attacks:
        named += _named_files(spec.kwargs, f"attacks.{spec.label}")
    named += _named_files(cfg.metrics.identity_options, "metrics.identity_options")
    seen = {m[0] for m in missing}
    for path, key in named:
        if path in seen or Path(path).expanduser().exists():
            continue
        seen.add(path)
        about = cfg.files.get(path, {}) if isinstance(cfg.files, dict) else {}
        missing.append((path, about.get("what", f"file named by {key}"), about.get("where", "")))
    return missing


def _line(path: str, what: str, where: str) -> str:
    return f"  - {path}: {what}" + (f" (published by: {where})" if where else "")


def check_inputs(cfg: MatrixConfig) -> None:
    """Stop with every missing required input listed. A missing LPIPS trunk joins that list but
    alone stops nothing: LPIPS is then n/a and the quality meter says so at the start."""
    from bench.metric_inputs import missing_lpips_trunk

    missing = missing_inputs(cfg)
    if not missing:
        return
    optional = missing_lpips_trunk(list(cfg.metrics.quality))
    also = " (and 1 optional)" if optional else ""
    lines = [f"{cfg.path}: {len(missing)} input(s) missing{also}; nothing was run:"]
    lines += [_line(*item) for item in missing + ([optional] if optional else [])]
    lines.append("Set the environment variables the matrix uses (see its header) or place the files there.")
    raise UserError("\n".join(lines))


def _first_existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(path: Path, what: str) -> None:
    """``path`` is, or can become, a folder this process may write into."""
    existing = _first_existing(Path(path))
    if not existing.is_dir():
        culprit = "is a file" if existing == Path(path).expanduser().absolute() else f"is under the file {existing}"
        raise UserError(f"{what} {path} {culprit}; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable ({existing} does not allow writing); give a folder you own")


def check_output_folders(out_root: Path) -> None:
    """--out and the face-crop cache, before anything is built or written."""
    from bench.data.cache import CACHE_ENV

    check_writable_folder(Path(out_root), "--out")
    if os.environ.get(CACHE_ENV):
        check_writable_folder(Path(os.environ[CACHE_ENV]), CACHE_ENV)
