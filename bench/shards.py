"""Self-describing shard files: each holds the sample indices it covers, a checksum of its
content and the entry versions that wrote it, so a resume can tell a good shard from a damaged
one (truncated, zero bytes, bit rot) or a foreign one (other samples, written by another run).

Frames are parquet with the description in the schema metadata under ``bench``; tensor shards
are safetensors with it in the header metadata. ``read_*`` verify and raise ``DamagedShard``
with the reason; nothing here decides what to do about it (the runner recomputes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

_KEY = "bench"


class DamagedShard(Exception):
    """A shard file that cannot be trusted; the message says why."""


def frame_checksum(frame: pd.DataFrame) -> str:
    """sha256 over column names, dtypes and values (numbers bit for bit, the rest as JSON)."""
    h = hashlib.sha256()
    for column in frame.columns:
        values = frame[column].to_numpy()
        h.update(f"{column}\0{values.dtype.kind}\0".encode())
        if values.dtype.kind in "biufM":
            h.update(np.ascontiguousarray(values).tobytes())
        else:
            items = [_plain(v) for v in values]
            h.update(json.dumps(items, default=str).encode())
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """A cell as JSON data; a missing value is null whether pandas holds it as None or NaN
    (parquet reads an object column's NaN back as None)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def describe(samples: list[int], checksum: str, writer: dict[str, str]) -> str:
    return json.dumps({"samples": [int(s) for s in samples], "checksum": checksum, "writer": writer},
                      sort_keys=True)


def write_frame_file(path: Path, frame: pd.DataFrame, samples: list[int], writer: dict[str, str],
                     extra: dict[str, str] | None = None) -> None:
    """``extra``: more metadata entries beside the description (the compute-settings stamp)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in (extra or {}).items()},
            _KEY.encode(): describe(samples, frame_checksum(frame), writer).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)
    try:  # a value parquet stores differently from pandas would make the file fail every later read
        read_frame_file(path)
    except DamagedShard as exc:
        raise RuntimeError(f"bug: {path} does not verify right after writing ({exc})") from None


def read_frame_file(path: Path, samples: list[int] | None = None) -> pd.DataFrame:
    """The verified frame; ``samples`` (when given) must be exactly the indices it was written for."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # truncated, zero bytes, not parquet: pyarrow raises several kinds
        raise DamagedShard(f"unreadable ({type(exc).__name__})") from None
    raw = (table.schema.metadata or {}).get(_KEY.encode())
    frame = table.to_pandas()
    _verify(raw, frame_checksum(frame), samples)
    return frame


def write_tensor_file(path: Path, tensors: dict[str, torch.Tensor], samples: list[int],
                      writer: dict[str, str], extra: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path),
              metadata={**(extra or {}), _KEY: describe(samples, tensors_checksum(tensors), writer)})


def read_tensor_file(path: Path, samples: list[int] | None = None) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(_KEY)
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except Exception as exc:
        raise DamagedShard(f"unreadable ({type(exc).__name__})") from None
    _verify(raw, tensors_checksum(tensors), samples)
    return tensors


def shard_writer(path: Path) -> dict[str, Any]:
    """The ``writer`` versions a shard file records (empty for an unreadable file)."""
    return _description(path).get("writer", {})


def stored_checksum(path: Path) -> str:
    """The checksum a shard file declares (not verified; '' for an unreadable file)."""
    return _description(path).get("checksum", "")


def _description(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                raw = (fh.metadata() or {}).get(_KEY)
        else:
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(_KEY.encode())
        return json.loads(raw) if raw else {}
    except Exception:
        return {}


def _verify(raw: str | bytes | None, checksum: str, samples: list[int] | None) -> None:
    if raw is None:
        raise DamagedShard("no sample list or checksum (written by an older version or another tool)")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise DamagedShard("its description is not valid JSON") from None
    if meta.get("checksum") != checksum:
        raise DamagedShard("checksum mismatch (content changed after it was written)")
    if samples is not None and [int(s) for s in meta.get("samples", [])] != [int(s) for s in samples]:
        raise DamagedShard(f"holds samples {_brief(meta.get('samples', []))}, expected {_brief(samples)}")


def _brief(values: list[int]) -> str:
    values = list(values)
    return str(values) if len(values) <= 6 else f"[{values[0]}, ..., {values[-1]}] ({len(values)})"
