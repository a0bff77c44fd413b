"""A dataset of face crops from a list of labelled videos, prepared once into the crop cache.

Adapters (``celebdf``, ``ffpp``, ``dfdc``) only list their videos as ``VideoEntry`` rows; this
module samples frames, detects and crops the face in each, commits every video to the
``CropStore`` and serves the crops as ``bench.types.Sample``. Corrupt videos and frames without a
face are skipped and counted in ``stats``, never fatal. A second construction with the same
options decodes nothing: it reads the index.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.cache import CropStore, video_key
from bench.data.faces import crop_face, make_face_detector
from bench.data.frames import CorruptVideoError, FrameSampling, read_frames
from bench.progress import progress_bar
from bench.types import Sample

CROP_FORMAT_VERSION = 1  # bump when the crop recipe changes, so old caches are not reused


@dataclass(frozen=True)
class VideoEntry:
    path: str  # relative to the dataset root, "/"-separated
    label: int  # 0 real, 1 fake
    split: str = "test"
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def video_id(self) -> str:
        return self.path.rsplit(".", 1)[0]


def select_per_class(entries: list[VideoEntry], videos_per_class: int | None, seed: int) -> list[VideoEntry]:
    """At most ``videos_per_class`` videos of each label, a seeded random subset (sorted back)."""
    if videos_per_class is None:
        return entries
    rng = np.random.default_rng(seed)
    keep: list[VideoEntry] = []
    for label in (0, 1):
        pool = sorted((e for e in entries if e.label == label), key=lambda e: e.path)
        order = rng.permutation(len(pool))[:videos_per_class]
        keep += [pool[i] for i in sorted(order)]
    return sorted(keep, key=lambda e: e.path)


class VideoFaceDataset(torch.utils.data.Dataset):
    """Face crops of ``entries``; ``labels`` lists every sample's label without decoding."""

    def __init__(self, name: str, root: str | Path, entries: list[VideoEntry], *, size: int = 256,
                 margin: float = 0.3, frames: str = "even", count: int = 8, clip_len: int = 14,
                 face_detector: str = "dlib", face_model: str | None = None, detect_max_side: int = 640,
                 cache_dir: str | Path | None = None, quiet: bool = False):
        self.name, self.root = name, Path(root)
        self.size = int(size)
        self.sampling = FrameSampling(frames, int(count), int(clip_len))
        self.options = {"dataset": name, "root": str(self.root.resolve()), "size": self.size,
                        "margin": float(margin), "frames": frames, "count": int(count),
                        "clip_len": int(clip_len), "face_detector": face_detector,
                        "face_model": str(face_model) if face_model else None,
                        "detect_max_side": int(detect_max_side), "version": CROP_FORMAT_VERSION}
        self.margin, self.detect_max_side = float(margin), int(detect_max_side)
        self.face_detector_name, self.face_model = face_detector, face_model
        self.store = CropStore.for_dataset(name, self.options, cache_dir)
        self.entries = entries
        self._prepare(quiet)
        self._build_samples()

    # -- preparation -------------------------------------------------------------------------
    def _prepare(self, quiet: bool) -> None:
        # A listed video absent from disk is counted, not committed: it may be added later.
        self.missing = [e for e in self.entries if not (self.root / e.path).is_file()]
        missing = {e.path for e in self.missing}
        todo = [e for e in self.entries
                if e.path not in missing and not self.store.is_done(video_key(e.path))]
        if todo:
            detector = make_face_detector(self.face_detector_name, self.face_model)
            with progress_bar(quiet) as progress:
                task = progress.add_task(f"{self.name}: face crops of videos", total=len(todo))
                for entry in todo:
                    self._prepare_video(entry, detector)
                    progress.advance(task)
        if todo or not self.store.index_path.exists():
            self.index = self.store.rebuild_index()
        else:
            self.index = self.store.read_index()

    def _prepare_video(self, entry: VideoEntry, detector) -> None:
        key, path = video_key(entry.path), self.root / entry.path
        counts = Counter(frames_read=0, frames_no_face=0)
        crops, frames, boxes = [], [], []
        try:
            decoded = read_frames(path, self.sampling)
            status = "ok"
        except CorruptVideoError:
            decoded, status = [], "corrupt"
        for index, rgb in decoded:
            counts["frames_read"] += 1
            box = self._detect(detector, rgb)
            if box is None:
                counts["frames_no_face"] += 1
                continue
            crops.append(crop_face(rgb, box, self.margin, self.size))
            frames.append(index)
            boxes.append(box)
        if status == "ok" and not crops:
            status = "no_face"
        array = np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8)
        self.store.write_video(key, entry.path, array, frames, boxes, status, dict(counts))

    def _detect(self, detector, rgb: np.ndarray) -> tuple[float, ...] | None:
        """The most confident face, detected on a frame shrunk to ``detect_max_side`` for speed."""
        scale = min(1.0, self.detect_max_side / max(rgb.shape[:2]))
        small = rgb if scale == 1.0 else _resize(rgb, scale)
        found = detector.detect(small)
        if not found:
            return None
        x0, y0, x1, y1, score = max(found, key=lambda b: b[4])
        return (x0 / scale, y0 / scale, x1 / scale, y1 / scale, score)

    # -- serving -----------------------------------------------------------------------------
    def _build_samples(self) -> None:
        by_video = {e.path: e for e in self.entries}
        rows = self.index[self.index["video"].isin(list(by_video))]
        rows = rows.sort_values(["video", "frame"], kind="stable")
        self._rows = list(zip(rows["video"], rows["key"], rows["row"], rows["frame"]))
        self.labels = [by_video[v].label for v, *_ in self._rows]
        self.video_ids = [by_video[v].video_id for v, *_ in self._rows]
        self._open: tuple[str, np.ndarray] | None = None
        self.stats = self._collect_stats()

    def _collect_stats(self) -> dict[str, int]:
        statuses = self.store.statuses()
        stats = Counter(videos_listed=len(self.entries), videos_ok=0, videos_missing=len(self.missing),
                        videos_corrupt=0, videos_no_face=0, frames_read=0, frames_no_face=0)
        for entry in self.entries:
            info = statuses.get(entry.path)
            if info is None:
                continue
            stats[f"videos_{info['status']}"] += 1
            stats.update(info["counts"])
        stats["crops"] = len(self._rows)
        stats["crops_real"] = self.labels.count(0)
        stats["crops_fake"] = self.labels.count(1)
        return dict(stats)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self._rows):
            raise IndexError(index)
        video, key, row, frame = self._rows[index]
        if self._open is None or self._open[0] != key:
            self._open = (key, self.store.load_crops(key))
        rgb = np.asarray(self._open[1][row])
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)
        entry_id = self.video_ids[index]
        return Sample(id=f"{entry_id}/f{int(frame):05d}", image01=image, label=self.labels[index],
                      video_id=entry_id, frame=int(frame), meta={"dataset": self.name, "video": video})


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
