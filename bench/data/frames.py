"""Which frames of a video to use, and reading them with OpenCV.

Two sampling modes:

- ``even``: ``count`` frames spread evenly over the whole video (first and last included);
- ``clip``: ``count`` clips of ``clip_len`` consecutive frames, the clip starts spread evenly over
  the video. The paper's official code uses clips of 14 consecutive frames.

A video that cannot be opened or read is a ``CorruptVideoError``; callers skip and count it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

OFFICIAL_CLIP_LEN = 14


class CorruptVideoError(Exception):
    """The video file could not be opened or no frame could be decoded from it."""


@dataclass(frozen=True)
class FrameSampling:
    mode: str = "even"  # "even" | "clip"
    count: int = 8  # frames ("even") or clips ("clip") per video
    clip_len: int = OFFICIAL_CLIP_LEN

    def __post_init__(self) -> None:
        if self.mode not in ("even", "clip"):
            raise ValueError(f"frame sampling mode must be 'even' or 'clip', got {self.mode!r}")
        if self.count < 1 or self.clip_len < 1:
            raise ValueError("frame sampling needs count >= 1 and clip_len >= 1")

    def indices(self, total: int) -> list[int]:
        return sample_frame_indices(total, self.mode, self.count, self.clip_len)


def sample_frame_indices(total: int, mode: str = "even", count: int = 8,
                         clip_len: int = OFFICIAL_CLIP_LEN) -> list[int]:
    """Sorted, unique frame indices in ``[0, total)``; fewer than asked when the video is short."""
    if total <= 0:
        return []
    if mode == "even":
        return sorted({round(i) for i in np.linspace(0, total - 1, num=min(count, total))})
    if mode == "clip":
        clip_len = min(clip_len, total)
        last_start = total - clip_len
        starts = {round(s) for s in np.linspace(0, last_start, num=count)} if count > 1 else {0}
        return sorted({s + k for s in starts for k in range(clip_len)})
    raise ValueError(f"unknown frame sampling mode {mode!r}")


def count_frames(capture: cv2.VideoCapture) -> int:
    return int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)


def read_frames(path: str | Path, sampling: FrameSampling) -> list[tuple[int, np.ndarray]]:
    """Decode the sampled frames of one video as ``(index, RGB uint8 (H,W,3))`` pairs.

    Frames are read sequentially (grab/retrieve) rather than by seeking: seeking in mp4 is
    unreliable across codecs and the sampled indices are sorted anyway.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise CorruptVideoError(f"cannot open {path}")
        total = count_frames(capture)
        wanted = sampling.indices(total)
        if not wanted:
            raise CorruptVideoError(f"no frames in {path}")
        out: list[tuple[int, np.ndarray]] = []
        wanted_set, last = set(wanted), wanted[-1]
        for index in range(last + 1):
            if not capture.grab():
                break  # header over-reported the frame count; keep what we have
            if index in wanted_set:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    out.append((index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        if not out:
            raise CorruptVideoError(f"no decodable frame in {path}")
        return out
    finally:
        capture.release()
