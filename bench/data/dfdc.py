"""DFDC (Deepfake Detection Challenge) training parts.

Layout: ``dfdc_train_part_<N>/`` folders, each with ``metadata.json`` mapping a video file name
to ``{"label": "REAL"|"FAKE", "original": <real file or null>, "split": "train"}`` and the mp4
files beside it. The paper evaluates on parts 0 and 49 (``test_parts``); split ``train`` is every
other part found. With ``test_parts=None`` the split is the official code's random 80/20 split by
video (seed 36) over all parts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.data.layout import OFFICIAL_SPLIT_SEED, MissingFile, absent, resolve_root, seeded_split
from bench.data.videos import VideoEntry, VideoFaceDataset, select_per_class
from bench.errors import UserError
from bench.registry import register_dataset

ENV = "ARTIFACT_BENCH_DFDC"
PAPER_TEST_PARTS = (0, 49)
PART = re.compile(r"^dfdc_train_part_(\d+)$")
PUBLISHED = "https://www.kaggle.com/c/deepfake-detection-challenge/data (full set: https://ai.meta.com/datasets/dfdc/)"


def part_dirs(root: Path) -> dict[int, Path]:
    return {int(m.group(1)): p for p in root.iterdir() if p.is_dir() and (m := PART.match(p.name))}


def read_metadata(folder: Path) -> list[VideoEntry]:
    path = folder / "metadata.json"
    if not path.is_file():
        raise UserError(f"DFDC metadata {path} not found: it ships inside each {folder.name}.zip ({PUBLISHED})")
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"DFDC metadata {path} is not valid JSON: {exc}") from exc
    entries = []
    for name, info in sorted(meta.items()):
        label = {"REAL": 0, "FAKE": 1}.get(str(info.get("label", "")).upper())
        if label is None:
            raise UserError(f"{path}: {name} has label {info.get('label')!r}, expected REAL or FAKE")
        extra = {"part": folder.name}
        if info.get("original"):
            extra["original"] = f"{folder.name}/{info['original']}"
        entries.append(VideoEntry(f"{folder.name}/{name}", label, "", extra))
    return entries


def list_videos(root: Path, split: str = "test", test_parts: tuple[int, ...] | None = PAPER_TEST_PARTS
                ) -> list[VideoEntry]:
    if split not in ("train", "test", "all"):
        raise UserError(f"unknown DFDC split {split!r}: use train, test or all")
    parts = part_dirs(root)
    if not parts:
        raise UserError(f"no dfdc_train_part_<N>/ folder under {root}: unpack the DFDC parts there ({PUBLISHED})")
    if test_parts is None:
        everything = [e for n in sorted(parts) for e in read_metadata(parts[n])]
        chosen = seeded_split([e.path for e in everything], split, OFFICIAL_SPLIT_SEED)
        test = seeded_split([e.path for e in everything], "test", OFFICIAL_SPLIT_SEED)
        return [_with_split(e, "test" if e.path in test else "train") for e in everything if e.path in chosen]
    wanted = sorted(n for n in parts if split == "all" or ((n in test_parts) == (split == "test")))
    if not wanted:
        raise UserError(f"no DFDC part for split {split!r} under {root}: test parts are "
                        f"{', '.join(f'dfdc_train_part_{n}' for n in test_parts)}")
    return [_with_split(e, "test" if n in test_parts else "train") for n in wanted for e in read_metadata(parts[n])]


def _with_split(entry: VideoEntry, split: str) -> VideoEntry:
    return VideoEntry(entry.path, entry.label, split, entry.meta)


def missing_files(root: Path, test_parts: tuple[int, ...] = PAPER_TEST_PARTS) -> list[MissingFile]:
    return absent([(root, "DFDC root folder", PUBLISHED)]
                  + [(root / f"dfdc_train_part_{n}" / "metadata.json", (f"DFDC part {n} (paper test data) "
                      "videos and labels"), PUBLISHED) for n in test_parts])


@register_dataset("dfdc", accepts=(VideoFaceDataset,))
def dfdc(root: str | None = None, split: str = "test", test_parts: tuple[int, ...] | None = PAPER_TEST_PARTS,
         videos_per_class: int | None = None, seed: int = 36, **options) -> VideoFaceDataset:
    """DFDC face crops; test = dfdc_train_part_0 and _49 as in the paper."""
    path = resolve_root(root, ENV, "DFDC")
    parts = tuple(test_parts) if test_parts is not None else None
    entries = select_per_class(list_videos(path, split, parts), videos_per_class, seed)
    return VideoFaceDataset("dfdc", path, entries, **options)
