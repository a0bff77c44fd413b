"""The on-disk face-crop cache.

Layout, under ``cache_root()/crops/<dataset>/<options hash>/``::

    options.json                  the options the hash was made from (for humans)
    videos/<key>.npy              uint8 (N, size, size, 3) RGB crops of one video
    videos/<key>.json             written last: frames, boxes, status, counts (the "done" marker)
    index.parquet                 one row per crop, rebuilt from videos/*.json

Each video is committed atomically (temp file + ``os.replace``, crops before their marker), so a
killed run resumes at the first video without a marker and the index can always be rebuilt from
what is on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

CACHE_ENV = "ARTIFACT_BENCH_CACHE"


def cache_root(override: str | Path | None = None) -> Path:
    """``override``, else ``$ARTIFACT_BENCH_CACHE``, else ``~/.cache/artifact-bench``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "artifact-bench"


def options_hash(options: dict[str, Any]) -> str:
    blob = json.dumps(options, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def video_key(relative_path: str) -> str:
    """A flat, filesystem-safe file stem for a video's path relative to the dataset root."""
    stem = relative_path.replace("\\", "/").rsplit(".", 1)[0]
    return stem.replace("/", "__")


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """``write(tmp_path)`` then rename onto ``path``: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; cache files are plain files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: _save_npy(tmp, array))


def _save_npy(tmp: str, array: np.ndarray) -> None:
    with open(tmp, "wb") as fh:  # a file object: np.save(str) would append ".npy" to the name
        np.save(fh, array)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1, sort_keys=True)))


class CropStore:
    """Per-video crop files plus a rebuilt parquet index, in one options-hash folder."""

    INDEX_COLUMNS: ClassVar[list[str]] = ["video", "key", "row", "frame", "x0", "y0", "x1", "y1", "score"]

    def __init__(self, folder: Path, options: dict[str, Any]):
        self.folder = Path(folder)
        self.videos_dir = self.folder / "videos"
        self.index_path = self.folder / "index.parquet"
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        if not (self.folder / "options.json").exists():
            atomic_write_json(self.folder / "options.json", options)

    @classmethod
    def for_dataset(cls, dataset: str, options: dict[str, Any], cache_dir: str | Path | None = None
                    ) -> CropStore:
        folder = cache_root(cache_dir) / "crops" / dataset / options_hash(options)
        return cls(folder, options)

    # -- one video ---------------------------------------------------------------------------
    def marker(self, key: str) -> Path:
        return self.videos_dir / f"{key}.json"

    def crops_path(self, key: str) -> Path:
        return self.videos_dir / f"{key}.npy"

    def is_done(self, key: str) -> bool:
        return self.marker(key).is_file()

    def write_video(self, key: str, video: str, crops: np.ndarray, frames: list[int],
                    boxes: list[tuple[float, ...]], status: str, counts: dict[str, int]) -> None:
        """Commit one video: crops first, then the marker that says the video is done."""
        if len(crops):
            atomic_write_npy(self.crops_path(key), np.ascontiguousarray(crops, dtype=np.uint8))
        atomic_write_json(self.marker(key), {"video": video, "status": status, "frames": list(frames),
                                             "boxes": [list(map(float, b)) for b in boxes],
                                             "counts": counts})

    def read_marker(self, key: str) -> dict[str, Any]:
        return json.loads(self.marker(key).read_text())

    def load_crops(self, key: str) -> np.ndarray:
        return np.load(self.crops_path(key), mmap_mode="r")

    # -- the index ---------------------------------------------------------------------------
    def rebuild_index(self) -> pd.DataFrame:
        """One row per crop, from every committed video marker on disk; written atomically."""
        rows = []
        for marker in sorted(self.videos_dir.glob("*.json")):
            meta = json.loads(marker.read_text())
            key = marker.stem
            for row, (frame, box) in enumerate(zip(meta["frames"], meta["boxes"])):
                rows.append({"video": meta["video"], "key": key, "row": row, "frame": int(frame),
                             "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3], "score": box[4]})
        index = pd.DataFrame(rows, columns=self.INDEX_COLUMNS)
        atomic_write(self.index_path, lambda tmp: index.to_parquet(tmp, index=False))
        return index

    def read_index(self) -> pd.DataFrame:
        return pd.read_parquet(self.index_path)

    def statuses(self) -> dict[str, dict[str, Any]]:
        """video -> {status, counts} for every committed video."""
        out = {}
        for marker in self.videos_dir.glob("*.json"):
            meta = json.loads(marker.read_text())
            out[meta["video"]] = {"status": meta["status"], "counts": meta["counts"]}
        return out
