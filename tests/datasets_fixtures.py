"""Miniature copies of the official dataset layouts: tiny mp4 videos with a real face in them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from skimage import data

FRAME = 128  # frame side in pixels; the astronaut's face is ~45 px wide in it


def face_frame(shift: int = 0) -> np.ndarray:
    """RGB (FRAME, FRAME, 3): the astronaut's face (dlib HOG finds it), shifted by ``shift`` px."""
    scene = data.astronaut()[20 - shift:276 - shift, 90 + shift:346 + shift]
    return cv2.resize(scene, (FRAME, FRAME), interpolation=cv2.INTER_AREA)


def blank_frame(value: int = 128) -> np.ndarray:
    return np.full((FRAME, FRAME, 3), value, np.uint8)


def write_video(path: Path, n_frames: int = 6, no_face: tuple[int, ...] = ()) -> Path:
    """An mp4 of ``n_frames`` face frames, except plain grey frames at indices ``no_face``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (FRAME, FRAME))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(n_frames):
        rgb = blank_frame() if i in no_face else face_frame(shift=i % 3)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    return path


def make_celebdf(root: Path) -> Path:
    """3 test videos + 1 corrupt test video, 2 train videos (one with a faceless frame)."""
    write_video(root / "Celeb-real/id0_0000.mp4")
    write_video(root / "YouTube-real/00000.mp4")
    write_video(root / "Celeb-synthesis/id0_id1_0000.mp4")
    write_corrupt(root / "Celeb-synthesis/id1_id0_0000.mp4")
    write_video(root / "Celeb-real/id1_0000.mp4")
    write_video(root / "Celeb-synthesis/id1_id2_0000.mp4", no_face=(5,))
    lines = ["1 Celeb-real/id0_0000.mp4", "1 YouTube-real/00000.mp4", "0 Celeb-synthesis/id0_id1_0000.mp4",
             "0 Celeb-synthesis/id1_id0_0000.mp4"]
    (root / "List_of_testing_videos.txt").write_text("\n".join(lines) + "\n")
    return root


def make_ffpp(root: Path) -> Path:
    """Pairs: train [000, 001], test [002, 003]; methods Deepfakes and FaceSwap at c23."""
    pairs = {"train": [["000", "001"]], "val": [], "test": [["002", "003"]]}
    (root / "splits").mkdir(parents=True)
    for split, p in pairs.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(p))
    for ids in (("000", "001"), ("002", "003")):
        for i in ids:
            write_video(root / f"original_sequences/youtube/c23/videos/{i}.mp4", n_frames=4)
        a, b = ids
        for method in ("Deepfakes", "FaceSwap"):
            for t, s in ((a, b), (b, a)):
                write_video(root / f"manipulated_sequences/{method}/c23/videos/{t}_{s}.mp4", n_frames=4)
    return root


def make_dfdc(root: Path) -> Path:
    """Parts 0 (test, 1 real + 1 fake + 1 corrupt fake) and 3 (train, 1 real + 1 fake)."""
    part0 = root / "dfdc_train_part_0"
    write_video(part0 / "aaa.mp4")
    write_video(part0 / "bbb.mp4")
    write_corrupt(part0 / "ccc.mp4")
    (part0 / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"}}))
    part3 = root / "dfdc_train_part_3"
    write_video(part3 / "ddd.mp4")
    write_video(part3 / "eee.mp4")
    (part3 / "metadata.json").write_text(json.dumps({
        "ddd.mp4": {"label": "REAL", "split": "train", "original": None},
        "eee.mp4": {"label": "FAKE", "split": "train", "original": "ddd.mp4"}}))
    return root
