"""FaceForensics++: original and manipulated sequences, split by the official pair lists.

Layout (as written by the official download script)::

    original_sequences/youtube/<c23|c40|raw>/videos/953.mp4
    manipulated_sequences/<Deepfakes|Face2Face|FaceSwap|NeuralTextures>/<comp>/videos/953_974.mp4
    splits/train.json, val.json, test.json      (or the same files directly under the root)

A split file is a list of id pairs ``[["953", "974"], ...]``: the split holds the real videos
``953`` and ``974`` and, for every method, the fakes ``953_974`` and ``974_953`` (target_source).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.data.layout import MissingFile, absent, resolve_root
from bench.data.videos import VideoEntry, VideoFaceDataset, select_per_class
from bench.errors import UserError
from bench.registry import register_dataset

ENV = "ARTIFACT_BENCH_FFPP"
METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
COMPRESSIONS = ("raw", "c23", "c40")
SPLITS = ("train", "val", "test")
PUBLISHED = "https://github.com/ondyari/FaceForensics (request form, then download-FaceForensics.py)"
SPLITS_PUBLISHED = "https://github.com/ondyari/FaceForensics/tree/master/dataset/splits"


def split_file(root: Path, split: str) -> Path:
    for candidate in (root / "splits" / f"{split}.json", root / f"{split}.json"):
        if candidate.is_file():
            return candidate
    return root / "splits" / f"{split}.json"


def read_pairs(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise UserError(f"FF++ split file {path} not found: get it from {SPLITS_PUBLISHED}")
    try:
        pairs = [(str(a), str(b)) for a, b in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise UserError(f"FF++ split file {path} is not a JSON list of id pairs: {exc}") from exc
    return pairs


def real_dir(compression: str) -> str:
    return f"original_sequences/youtube/{compression}/videos"


def fake_dir(method: str, compression: str) -> str:
    return f"manipulated_sequences/{method}/{compression}/videos"


def list_videos(root: Path, split: str = "test", compression: str = "c23",
                methods: tuple[str, ...] = METHODS) -> list[VideoEntry]:
    if compression not in COMPRESSIONS:
        raise UserError(f"unknown FF++ compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown FF++ method {unknown[0]!r}: use {', '.join(METHODS)}")
    splits = SPLITS if split == "all" else (split,)
    if any(s not in SPLITS for s in splits):
        raise UserError(f"unknown FF++ split {split!r}: use train, val, test or all")
    entries = []
    for name in splits:
        for a, b in read_pairs(split_file(root, name)):
            for real in (a, b):
                entries.append(VideoEntry(f"{real_dir(compression)}/{real}.mp4", 0, name,
                                          {"method": "youtube", "compression": compression}))
            for method in methods:
                for target, source in ((a, b), (b, a)):
                    entries.append(VideoEntry(f"{fake_dir(method, compression)}/{target}_{source}.mp4", 1,
                                              name, {"method": method, "compression": compression,
                                                     "target": target, "source": source,
                                                     "original": f"{real_dir(compression)}/{target}.mp4"}))
    return sorted(set(entries), key=lambda e: e.path)


def missing_files(root: Path, compression: str = "c23", methods: tuple[str, ...] = METHODS) -> list[MissingFile]:
    return absent([(root, "FaceForensics++ root folder", PUBLISHED),
                   (root / real_dir(compression), f"original videos ({compression})", PUBLISHED)]
                  + [(root / fake_dir(m, compression), f"{m} videos ({compression})", PUBLISHED) for m in methods]
                  + [(split_file(root, s), f"official {s} split (id pairs)", SPLITS_PUBLISHED) for s in SPLITS])


@register_dataset("ffpp", accepts=(VideoFaceDataset,))
def ffpp(root: str | None = None, split: str = "test", compression: str = "c23",
         methods: tuple[str, ...] = METHODS, videos_per_class: int | None = None, seed: int = 36,
         **options) -> VideoFaceDataset:
    """FaceForensics++ face crops (c23 by default), split by the official pair lists."""
    path = resolve_root(root, ENV, "FaceForensics++")
    entries = list_videos(path, split, compression, tuple(methods))
    return VideoFaceDataset("ffpp", path, select_per_class(entries, videos_per_class, seed), **options)
