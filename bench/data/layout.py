"""Dataset roots, missing-file reports and the seeded video split shared by the adapters."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bench.errors import UserError

OFFICIAL_SPLIT_SEED = 36  # the paper's official code: random 80/20 split by video, seed 36


class MissingFile(NamedTuple):
    path: str  # absolute path that should exist
    what: str  # what it is, in words
    where_published: str  # where the official release publishes it


def resolve_root(root: str | Path | None, env_var: str, dataset: str) -> Path:
    """``root``, else ``$env_var``; a missing folder is a one-line ``UserError``."""
    value = root if root not in (None, "") else os.environ.get(env_var)
    if not value:
        raise UserError(f"{dataset} root not given: pass root=PATH or set {env_var}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UserError(f"{dataset} root {path} does not exist: pass root=PATH or set {env_var}")
    return path


def seeded_split(names: list[str], split: str, seed: int = OFFICIAL_SPLIT_SEED,
                 test_fraction: float = 0.2) -> set[str]:
    """The names in ``split`` ("train" | "test" | "all") of a random split by video."""
    ordered = sorted(names)
    if split == "all":
        return set(ordered)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_test = round(test_fraction * len(ordered))
    test = {ordered[i] for i in order[:n_test]}
    if split == "test":
        return test
    if split == "train":
        return set(ordered) - test
    raise UserError(f"unknown split {split!r}: use train, test or all")


def missing_files(dataset_name: str, root: str | Path) -> list[MissingFile]:
    """Every file or folder the adapter ``dataset_name`` needs that is absent under ``root``."""
    try:
        module = importlib.import_module(f"bench.data.{dataset_name}")
    except ModuleNotFoundError as exc:
        raise UserError(f"unknown dataset {dataset_name!r}: no bench/data/{dataset_name}.py") from exc
    if not hasattr(module, "missing_files"):
        return []
    return module.missing_files(Path(root).expanduser())


def absent(paths: list[tuple[Path, str, str]]) -> list[MissingFile]:
    return [MissingFile(str(p), what, where) for p, what, where in paths if not p.exists()]
