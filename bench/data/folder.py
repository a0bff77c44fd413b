"""Pre-cropped face images in ``real/`` and ``fake/`` folders.

``root/real/**/*.{png,jpg,jpeg,bmp,webp}`` are label 0, ``root/fake/**`` label 1. With
``split="train"|"test"`` and ``root/<split>/real`` present, that sub-tree is used; ``split="all"``
(default) reads ``root/real`` and ``root/fake``. An image in a sub-folder (``real/<video>/0001.png``)
belongs to the video named by the sub-folder; a loose image is its own video.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from bench.data.image_header import check_image_headers
from bench.data.layout import MissingFile, absent, resolve_root
from bench.errors import UserError
from bench.registry import register_dataset
from bench.types import Sample

ENV = "ARTIFACT_BENCH_FOLDER"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
CLASSES = {"real": 0, "fake": 1}


class FolderFaces(torch.utils.data.Dataset):
    def __init__(self, root: Path, split: str = "all", size: int | None = 256):
        base = root / split if split != "all" and (root / split / "real").is_dir() else root
        if split not in ("all", "train", "test", "val") or (split != "all" and base == root):
            raise UserError(f"folder split {split!r} needs {root / split / 'real'} and "
                            f"{root / split / 'fake'}; use split='all' for {root}/real and {root}/fake")
        self.root, self.size = base, size
        self.paths: list[Path] = []
        self.labels: list[int] = []
        self.video_ids: list[str] = []
        for name, label in CLASSES.items():
            folder = base / name
            if not folder.is_dir():
                raise UserError(f"folder dataset needs {folder}/ with {name} face crops")
            for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                rel = path.relative_to(folder)
                self.paths.append(path)
                self.labels.append(label)
                self.video_ids.append(f"{name}/{rel.parent.as_posix() if len(rel.parts) > 1 else rel.stem}")
        check_image_headers(self.paths, size)  # every file, before any work
        self.stats = {"crops": len(self.paths), "crops_real": self.labels.count(0),
                      "crops_fake": self.labels.count(1)}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.paths):
            raise IndexError(index)
        path = self.paths[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"cannot read image {path}: replace or delete the file")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.size and rgb.shape[:2] != (self.size, self.size):
            interp = cv2.INTER_AREA if max(rgb.shape[:2]) > self.size else cv2.INTER_CUBIC
            rgb = cv2.resize(rgb, (self.size, self.size), interpolation=interp)
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
        rel = path.relative_to(self.root).as_posix()
        return Sample(id=rel, image01=image, label=self.labels[index], video_id=self.video_ids[index],
                      frame=0, meta={"dataset": "folder", "path": str(path)})


def missing_files(root: Path) -> list[MissingFile]:
    where = "your own face crops (any source)"
    return absent([(root, "folder dataset root", where), (root / "real", "real face crops", where),
                   (root / "fake", "fake face crops", where)])


@register_dataset("folder")
def folder(root: str | None = None, split: str = "all", size: int | None = 256) -> FolderFaces:
    """Pre-cropped face images from root/real and root/fake."""
    return FolderFaces(resolve_root(root, ENV, "folder dataset"), split, size)
