"""The compute settings a run's float results depend on, besides its inputs and versions.

CPU float reductions (sums in kernels that split work across threads) give other last bits at
another intra-op thread count, and a sign-gradient attack or a 0.5 threshold turns those bits
into flipped samples. So the thread count is a setting of the run, like its seed: ``threads:``
in the matrix or ``--threads``, applied with ``torch.set_num_threads`` in every process and rank
before anything is built. The device type (cpu or cuda: other kernels) and ``deterministic:``
(PyTorch's deterministic kernels, cuDNN's deterministic algorithms) belong with it.

The default is one thread, a fixed number: it is what ``torchrun`` gives each rank, it never
oversubscribes a 2-core CI machine, and it gives the same numbers on a laptop and a 64-core
workstation. A big CPU machine is used by running more ranks (``torchrun --nproc_per_node``),
which scales better than threads for these small batches, or by a larger ``threads:``.

The settings are written into the manifest and stamped into every shard file. A resume under
other settings is refused with one line; ``--allow-compute-change`` recomputes the shards that
were computed under other settings instead, so a run folder never mixes them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError
from bench.store import MANIFEST, RunStore, write_json

DEFAULT_THREADS = 1
STAMP_KEY = "artifact_bench_compute"  # safetensors metadata / parquet schema metadata key
ALLOW_FLAG = "--allow-compute-change"


@dataclass(frozen=True)
class ComputeSettings:
    """The settings compared on resume and stamped into each shard."""

    threads: int
    device: str  # device type: cpu or cuda
    deterministic: bool

    @classmethod
    def resolve(cls, matrix_threads: int | None, cli_threads: int | None, device: torch.device,
                deterministic: bool) -> ComputeSettings:
        """``--threads`` over the matrix's ``threads:`` over :data:`DEFAULT_THREADS`."""
        threads = cli_threads or matrix_threads or DEFAULT_THREADS
        return cls(threads=int(threads), device=torch.device(device).type, deterministic=bool(deterministic))

    def apply(self) -> None:
        """Set this process's intra-op threads and kernel choices; call before any compute."""
        torch.set_num_threads(self.threads)
        if self.deterministic and self.device == "cuda":
            # cuBLAS reads this when its first handle is made; deterministic matmuls need it
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: an op with no deterministic kernel warns (naming itself) instead of
        # stopping a run hours in; every op that has one uses it
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        torch.backends.cudnn.deterministic = self.deterministic
        torch.backends.cudnn.benchmark = False  # autotuning may pick another algorithm per run

    def compared(self) -> dict[str, Any]:
        return asdict(self)

    def stamp(self) -> str:
        """The JSON every shard file carries."""
        return json.dumps(self.compared(), sort_keys=True)

    def describe(self) -> dict[str, Any]:
        """For the manifest: the compared settings plus facts that explain differing numbers
        between machines (they are recorded, not compared)."""
        facts: dict[str, Any] = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
        if self.device == "cuda" and torch.cuda.is_available():
            facts["cuda_device_name"] = torch.cuda.get_device_name()
        return {**self.compared(), **facts}


def differences(stored: dict[str, Any] | None, current: ComputeSettings) -> list[str]:
    """'threads 2 -> 1'-style lines for each compared setting that differs; a setting the
    store does not record (a run from before settings were recorded) counts as differing."""
    stored = stored or {}
    return [f"{key} {stored.get(key, 'unrecorded')} -> {value}"
            for key, value in current.compared().items() if stored.get(key) != value]


def resume_hint(stored: dict[str, Any] | None, current: ComputeSettings) -> str:
    """How to resume under the stored settings, as what a user types."""
    stored = stored or {}
    if not set(current.compared()) <= set(stored):
        return "the settings it was computed with"
    forms = {"threads": "--threads {}", "device": "--device {}", "deterministic": "deterministic: {} in the matrix"}
    return " and ".join(forms[key].format(str(stored[key]).lower())
                        for key, value in current.compared().items() if stored[key] != value)


def read_stamp(path: Path) -> dict[str, Any] | None:
    """The settings stamped into one shard file, None when it has none."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(STAMP_KEY)
    else:
        import pyarrow.parquet as pq

        text = (pq.read_schema(path).metadata or {}).get(STAMP_KEY.encode())
    return json.loads(text) if text else None


def shard_files(store: RunStore) -> list[Path]:
    folder = store.root / "shards"
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")) \
        if folder.is_dir() else []


def remove_other_shards(store: RunStore, current: ComputeSettings) -> int:
    """Delete every shard not stamped with ``current``, and the shards computed from a deleted
    adversarial shard (its quality and scores); the run then recomputes them. Returns how many."""
    stale = {p for p in shard_files(store) if read_stamp(p) != current.compared()}
    shards = store.root / "shards"
    for adv in [p for p in stale if p.relative_to(shards).parts[0] == "adv"]:
        source, attack = adv.relative_to(shards).parts[1:3]
        stale |= set((shards / "quality" / source / attack).glob(adv.stem + ".*"))
        stale |= set((shards / "score" / source / attack).glob(f"*/{adv.stem}.*"))
    for path in stale:
        path.unlink(missing_ok=True)
    records = store.root / "records" / "records.parquet"
    if stale and records.is_file():
        records.unlink()  # merged from shards that are gone; rewritten when the run completes
    return len(stale)


def adopt(store: RunStore, current: ComputeSettings, allow_change: bool = False, is_main: bool = True) -> None:
    """Check ``current`` against the run folder's settings before any shard is computed, and
    stamp the shards this process writes. A new run records ``current`` in its manifest; a
    resume under other settings is refused, or with ``allow_change`` recomputes the shards
    computed otherwise. Only rank 0 (``is_main``) changes the folder; the other ranks, which
    adopt after it, must then match what it recorded."""
    store.shard_stamp = {STAMP_KEY: current.stamp()}
    manifest = store.manifest
    stored = manifest.get("compute")
    if is_main and stored is None and not shard_files(store):
        write_json(store.root / MANIFEST, {**manifest, "compute": current.describe()})
        return
    changed = differences(stored, current)
    if not changed:
        return
    if not is_main:
        raise UserError(f"this rank computes with {', '.join(changed)} against rank 0's settings; every "
                        "rank must use the same threads and device type")
    if not allow_change:
        raise UserError(f"{store.root} was computed with other compute settings ({', '.join(changed)}), which "
                        f"give other numbers; resume with {resume_hint(stored, current)}, or pass {ALLOW_FLAG} to "
                        "recompute its shards under the new ones")
    remove_other_shards(store, current)
    write_json(store.root / MANIFEST, {**manifest, "compute": current.describe()})
