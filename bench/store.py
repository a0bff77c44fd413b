"""The run folder: manifest, shards written atomically, resume, and the merged records.

Layout of ``results/<matrix>/<run-id>/``::

    manifest.json                   resolved config, seed, versions, git commit, checkpoint sha256
    shards/clean/<target>/NNNNN.parquet           p_fake of the clean fakes, once per target
    shards/adv/<source>/<attack>/NNNNN.safetensors adversarial images (uint8), inversion, info
    shards/quality/<source>/<attack>/NNNNN.parquet quality metrics, once per (source, attack)
    shards/score/<source>/<attack>/<target>/NNNNN.parquet p_fake of adv (and inversion) per target
    records/records.parquet         the merged rows, one per (source, attack, target, sample)
    tables/  figures/               views rendered from records

A shard is written to a temporary name and renamed into place, so a shard file that exists is
complete; a killed run resumes by skipping every shard that exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from bench.errors import UserError

MANIFEST = "manifest.json"
_VERSIONED = ("artifact-bench", "torch", "torchvision", "timm", "torchattacks", "lpips", "numpy", "pandas",
              "scikit-image", "safetensors")


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk or a folder that turned read-only: one line, not a traceback
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another --out "
                        "(finished shards are kept; the same command resumes)") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"))


def run_id_of(resolved: dict[str, Any]) -> str:
    """Hash of the resolved config. The device is left out: the same matrix resumed on another
    device continues the same run."""
    keyed = {k: v for k, v in resolved.items() if k != "device"}
    blob = json.dumps(keyed, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def run_root_of(out_root: Path, resolved: dict[str, Any]) -> Path:
    """OUT/<matrix name>/<run id>; the name must be one plain folder name (never '..' or '/x')."""
    from bench.matrix_checks import check_run_name

    check_run_name(resolved["name"], "matrix")
    return out_root / resolved["name"] / run_id_of(resolved)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoint_files(resolved: dict[str, Any]) -> dict[str, str]:
    """Every existing file named by a detector or attack option (checkpoints, weights)."""
    found: dict[str, str] = {}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        elif isinstance(value, str) and len(value) < 4096 and os.path.isfile(value):
            found[where] = value

    for section in ("detectors", "attacks"):
        for spec in resolved.get(section, []):
            walk(spec.get("kwargs", {}), f"{section}.{spec['label']}")
    from bench.metric_inputs import metric_weight_files

    found.update(metric_weight_files(resolved))  # IR-SE50, LPIPS trunk
    return found


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class RunStore:
    """One run folder. Shard keys are tuples of path parts, e.g. ("adv", "xception", "pgd")."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.shard_stamp: dict[str, str] = {}  # metadata written into every shard (bench/compute_settings.py)

    # -- creation and opening ------------------------------------------------------------------
    @classmethod
    def create(cls, out_root: Path, resolved: dict[str, Any], fresh: bool = False) -> RunStore:
        run_id = run_id_of(resolved)
        root = run_root_of(Path(out_root), resolved)
        if fresh and root.exists():
            shutil.rmtree(root)
        store = cls(root)
        if not (root / MANIFEST).exists():
            files = checkpoint_files(resolved)
            manifest = {
                "run_id": run_id,
                "matrix": resolved["name"],
                "config": resolved,
                "seed": resolved.get("seed"),
                "versions": package_versions(),
                "git_commit": git_commit(),
                "checkpoints": {k: {"path": v, "sha256": sha256_file(Path(v))} for k, v in files.items()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch_device_count": torch.cuda.device_count(),
            }
            write_json(root / MANIFEST, manifest)
        return store

    @classmethod
    def open(cls, root: str | Path) -> RunStore:
        root = Path(root)
        if not (root / MANIFEST).is_file():
            raise UserError(f"{root} is not a run folder (no {MANIFEST}); pass results/<matrix>/<run-id>")
        return cls(root)

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / MANIFEST).read_text())

    @property
    def run_id(self) -> str:
        return self.root.name

    # -- shards --------------------------------------------------------------------------------
    def shard_path(self, key: tuple[str, ...], index: int, ext: str) -> Path:
        return self.root.joinpath("shards", *[safe_part(k) for k in key], f"{index:05d}.{ext}")

    def has(self, key: tuple[str, ...], index: int, ext: str) -> bool:
        return self.shard_path(key, index, ext).is_file()

    def write_frame(self, key: tuple[str, ...], index: int, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self.shard_stamp})
        atomic_write(self.shard_path(key, index, "parquet"), lambda p: pq.write_table(table, p))

    def read_frame(self, key: tuple[str, ...], index: int) -> pd.DataFrame:
        return pd.read_parquet(self.shard_path(key, index, "parquet"))

    def write_tensors(self, key: tuple[str, ...], index: int, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(self.shard_path(key, index, "safetensors"), lambda p: save_file(tensors, str(p), self.shard_stamp or None))

    def read_tensors(self, key: tuple[str, ...], index: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.shard_path(key, index, "safetensors")))

    def shard_indices(self, key: tuple[str, ...], ext: str) -> list[int]:
        folder = self.root.joinpath("shards", *[safe_part(k) for k in key])
        return sorted(int(p.stem) for p in folder.glob(f"*.{ext}")) if folder.is_dir() else []

    # -- records and views ---------------------------------------------------------------------
    @property
    def records_path(self) -> Path:
        return self.root / "records" / "records.parquet"

    def write_records(self, frame: pd.DataFrame) -> None:
        atomic_write(self.records_path, lambda p: frame.to_parquet(p, index=False))

    def records(self) -> pd.DataFrame:
        if not self.records_path.is_file():
            raise UserError(f"{self.root} has no records yet; finish the run with `bench run` (it resumes)")
        return pd.read_parquet(self.records_path)

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"


def safe_part(name: str) -> str:
    """A shard path component from a display name (no separators, no dot-files)."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in str(name))
    return cleaned.lstrip(".") or "_"
