"""The run folder: manifest, shards written atomically, resume, and the merged records.

Layout of ``results/<matrix>/<run-id>/``::

    manifest.json                   resolved config, seed, versions, git commit, checkpoint sha256
    shards/clean/<target>/NNNNN.parquet           p_fake of the clean fakes, once per target
    shards/adv/<source>/<attack>/NNNNN.safetensors adversarial images (uint8), inversion, info
    shards/quality/<source>/<attack>/NNNNN.parquet quality metrics, once per (source, attack)
    shards/score/<source>/<attack>/<target>/NNNNN.parquet p_fake of adv (and inversion) per target
    records/records.parquet         the merged rows, one per (source, attack, target, sample)
    tables/  figures/               views rendered from records

A shard is written to a temporary name, fsynced and renamed into place, so a shard file that
exists was complete when written. Each shard also carries the sample indices it holds, a checksum
of its content and the entry versions that wrote it (``bench.shard_check``); a killed run resumes
by skipping every shard that exists and verifies, and recomputes one that does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.errors import UserError
from bench.shards import DamagedShard, read_frame_file, read_tensor_file, write_frame_file, write_tensor_file

MANIFEST = "manifest.json"
_VERSIONED = ("artifact-bench", "torch", "torchvision", "timm", "torchattacks", "lpips", "numpy", "pandas",
              "scikit-image", "safetensors")


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync it, then rename onto ``path``: readers never see half a
    file, and a power cut after the rename cannot leave a renamed but empty one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:  # a full disk or a folder that turned read-only: one line, not a traceback
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another --out "
                        "(finished shards are kept; the same command resumes)") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def save_png(fig, path: Path) -> Path:
    """A matplotlib figure as a PNG, written atomically, without the software stamp (so the
    same figure gives the same bytes), then closed."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png", metadata={"Software": None}))
    plt.close(fig)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory; the file itself was synced
        pass
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"))


def run_id_of(identity: dict[str, Any]) -> str:
    """Hash of a run's identity (``bench.identity.run_identity``): only what changes numbers."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def run_root_of(out_root: Path, name: str, run_id: str) -> Path:
    """OUT/<matrix name>/<run id>; the name must be one plain folder name (never '..' or '/x')."""
    from bench.matrix_checks import check_run_name

    check_run_name(name, "matrix")
    return Path(out_root) / name / run_id


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
        self.created_now = False  # set by ``create``: this process wrote the manifest
        self.shard_stamp: dict[str, str] = {}  # metadata written into every shard (bench/compute_settings.py)

    # -- creation and opening ------------------------------------------------------------------
    @classmethod
    def create(cls, out_root: Path, manifest: dict[str, Any], fresh: bool = False) -> RunStore:
        """The folder ``out_root/<matrix>/<run id>``: a new one gets ``manifest``; an existing one
        keeps its own (the caller checks it with ``bench.resume`` before any work)."""
        root = run_root_of(out_root, manifest["matrix"], manifest["run_id"])
        if fresh and root.exists():
            shutil.rmtree(root)
        store = cls(root)
        store.created_now = not (root / MANIFEST).exists()
        if store.created_now:
            write_json(root / MANIFEST, manifest)
        return store

    @classmethod
    def open(cls, root: str | Path) -> RunStore:
        root = Path(root)
        if not (root / MANIFEST).is_file():
            raise UserError(f"{root} is not a run folder (no {MANIFEST}); pass results/<matrix>/<run-id>")
        store = cls(root)
        store.manifest  # noqa: B018 - fail now, with the clear message, if it is unreadable
        return store

    @property
    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
            raise UserError(f"{path} is unreadable ({reason}); restore it, or start over with "
                            "`bench run --fresh`") from None
        if not isinstance(data, dict) or "run_id" not in data:
            raise UserError(f"{path} is not a run manifest; restore it, or start over with `bench run --fresh`")
        return data

    def update_manifest(self, changes: dict[str, Any]) -> None:
        write_json(self.root / MANIFEST, {**self.manifest, **changes})

    @property
    def run_id(self) -> str:
        return self.root.name

    # -- shards --------------------------------------------------------------------------------
    def shard_path(self, key: tuple[str, ...], index: int, ext: str) -> Path:
        return self.root.joinpath("shards", *[safe_part(k) for k in key], f"{index:05d}.{ext}")

    def has(self, key: tuple[str, ...], index: int, ext: str) -> bool:
        return self.shard_path(key, index, ext).is_file()

    def write_frame(self, key: tuple[str, ...], index: int, frame: pd.DataFrame, samples: list[int],
                    writer: dict[str, str]) -> None:
        atomic_write(self.shard_path(key, index, "parquet"),
                     lambda p: write_frame_file(p, frame, samples, writer, self.shard_stamp))

    def read_frame(self, key: tuple[str, ...], index: int, samples: list[int] | None = None) -> pd.DataFrame:
        return self._read(key, index, "parquet", samples)

    def write_tensors(self, key: tuple[str, ...], index: int, tensors: dict[str, torch.Tensor],
                      samples: list[int], writer: dict[str, str]) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(self.shard_path(key, index, "safetensors"),
                     lambda p: write_tensor_file(p, tensors, samples, writer, self.shard_stamp))

    def read_tensors(self, key: tuple[str, ...], index: int, samples: list[int] | None = None) -> dict[str, torch.Tensor]:
        return self._read(key, index, "safetensors", samples)

    def _read(self, key: tuple[str, ...], index: int, ext: str, samples: list[int] | None):
        path = self.shard_path(key, index, ext)
        read = read_frame_file if ext == "parquet" else read_tensor_file
        try:
            return read(path, samples)
        except DamagedShard as exc:
            raise UserError(f"shard {path} is damaged: {exc}; run `bench run` again to recompute it") from None

    def discard_if_damaged(self, key: tuple[str, ...], index: int, ext: str, samples: list[int]) -> bool:
        """Verify one existing shard; a damaged one is removed (so it is recomputed) with one
        warning line. True when it was discarded."""
        path = self.shard_path(key, index, ext)
        if not path.is_file():
            return False
        try:
            (read_frame_file if ext == "parquet" else read_tensor_file)(path, samples)
            return False
        except DamagedShard as exc:
            print(f"warning: shard {path.relative_to(self.root)} is damaged ({exc}); recomputing it",
                  file=sys.stderr)
            path.unlink()
            return True

    def shard_indices(self, key: tuple[str, ...], ext: str) -> list[int]:
        folder = self.root.joinpath("shards", *[safe_part(k) for k in key])
        return sorted(int(p.stem) for p in folder.glob(f"*.{ext}")) if folder.is_dir() else []

    # -- records and views ---------------------------------------------------------------------
    @property
    def records_path(self) -> Path:
        return self.root / "records" / "records.parquet"

    def write_records(self, frame: pd.DataFrame) -> None:
        from bench.types import validate_records

        validate_records(frame, "records being written")
        samples = sorted(set(frame["sample_index"].astype(int))) if "sample_index" in frame else []
        atomic_write(self.records_path, lambda p: write_frame_file(p, frame, samples, {}))

    @property
    def scores_path(self) -> Path:
        return self.root / "scores.parquet"

    def write_scores(self, frame: pd.DataFrame) -> None:
        """Every target's scores of the clean evaluation set (reals and fakes), for the detector
        table and the AUC under attack; written at merge, before the records."""
        atomic_write(self.scores_path, lambda p: write_frame_file(p, frame, [], {}))

    def scores(self) -> pd.DataFrame | None:
        """The clean scores, or None for a run merged before they existed or a damaged file."""
        try:
            return read_frame_file(self.scores_path)
        except (DamagedShard, OSError):
            return None

    def records(self) -> pd.DataFrame:
        """The merged records, verified (checksum) and checked against the record schema."""
        from bench.types import validate_records

        if not self.records_path.is_file():
            raise UserError(f"{self.root} has no records yet; finish the run with `bench run` (it resumes)")
        try:
            frame = read_frame_file(self.records_path)
        except DamagedShard as exc:
            raise UserError(f"{self.records_path} is damaged ({exc}); run `bench run` again to merge the "
                            "shards anew") from None
        validate_records(frame, str(self.records_path))
        return frame

    def records_ok(self) -> bool:
        """Whether a verified records file is there (a finished run: nothing left to merge)."""
        try:
            read_frame_file(self.records_path)
            return True
        except (DamagedShard, OSError):
            return False

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
