"""Celeb-DF v2: ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` and the official test list.

``List_of_testing_videos.txt`` holds lines ``<label> <relative path>`` where, in that file,
**1 = real and 0 = fake** (the opposite of our 0 = real / 1 = fake); e.g.
``1 YouTube-real/00170.mp4`` and ``0 Celeb-synthesis/id0_id16_0007.mp4``. Split ``test`` is exactly
that list (518 videos), ``train`` every other video on disk, ``all`` both. Fake names are
``id<target>_id<source>_<n>.mp4``, made from ``Celeb-real/id<target>_<n>.mp4``.
"""

from __future__ import annotations

from pathlib import Path

from bench.data.layout import MissingFile, absent, resolve_root
from bench.data.videos import VideoEntry, VideoFaceDataset, select_per_class
from bench.errors import UserError
from bench.registry import register_dataset

ENV = "ARTIFACT_BENCH_CELEBDF"
TEST_LIST = "List_of_testing_videos.txt"
FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}
PUBLISHED = "https://github.com/yuezunli/celeb-deepfakeforensics (request form; Celeb-DF-v2.zip)"


def read_test_list(path: Path) -> dict[str, int]:
    """relative path -> our label (0 real, 1 fake), converting the file's 1 = real convention."""
    out: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise UserError(f"{path}:{number}: expected '<1 real|0 fake> <relative path>', got {line!r}")
        out[parts[1].strip()] = 1 - int(parts[0])
    return out


def fake_meta(name: str) -> dict[str, str]:
    """``id0_id16_0007`` -> target id0, source id16, original Celeb-real/id0_0007.mp4."""
    parts = name.split("_")
    if len(parts) == 3:
        return {"target": parts[0], "source": parts[1], "original": f"Celeb-real/{parts[0]}_{parts[2]}.mp4"}
    return {}


def list_videos(root: Path, split: str = "test", folders: tuple[str, ...] = tuple(FOLDERS)) -> list[VideoEntry]:
    if split not in ("train", "test", "all"):
        raise UserError(f"unknown Celeb-DF split {split!r}: use train, test or all")
    list_path = root / TEST_LIST
    if not list_path.is_file():
        raise UserError(f"Celeb-DF test list {list_path} not found: it ships in Celeb-DF-v2.zip ({PUBLISHED})")
    test = read_test_list(list_path)
    entries = []
    on_disk = {f"{folder}/{p.name}" for folder in folders for p in (root / folder).glob("*.mp4")}
    for rel in sorted(on_disk | {r for r in test if r.split("/")[0] in folders}):
        folder, name = rel.split("/")[0], Path(rel).stem
        in_test = rel in test
        if (split == "test" and not in_test) or (split == "train" and in_test):
            continue
        label = FOLDERS.get(folder, test.get(rel, 0))
        if in_test and test[rel] != label:
            raise UserError(f"{list_path}: {rel} is labelled {'fake' if test[rel] else 'real'} in the list "
                            f"but lies in {folder}/")
        meta = {"source_folder": folder, **(fake_meta(name) if label else {})}
        entries.append(VideoEntry(rel, label, "test" if in_test else "train", meta))
    return entries


def missing_files(root: Path) -> list[MissingFile]:
    return absent([(root, "Celeb-DF v2 root folder", PUBLISHED)]
                  + [(root / f, f"{f}/ videos", PUBLISHED) for f in FOLDERS]
                  + [(root / TEST_LIST, "official test split list", PUBLISHED)])


@register_dataset("celebdf", accepts=(VideoFaceDataset,))
def celebdf(root: str | None = None, split: str = "test", folders: tuple[str, ...] = tuple(FOLDERS),
            videos_per_class: int | None = None, seed: int = 36, **options) -> VideoFaceDataset:
    """Celeb-DF v2 face crops; split test = official List_of_testing_videos.txt."""
    path = resolve_root(root, ENV, "Celeb-DF v2")
    entries = select_per_class(list_videos(path, split, tuple(folders)), videos_per_class, seed)
    return VideoFaceDataset("celebdf", path, entries, **options)
