"""Image sizes from file headers alone (PNG, JPEG, BMP, WebP), so a folder of images is checked
up front in milliseconds: every file readable as an image, none over the decoder's pixel limit,
and, when the dataset does not resize (``size: null``), all of one size. Without this a bad
file is found by the decoder halfway through a run.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

from bench.errors import UserError

# OpenCV refuses larger images (CV_IO_MAX_IMAGE_PIXELS, 2**30 unless the environment says otherwise)
DECODER_PIXEL_LIMIT_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_HEAD = 64 * 1024  # JPEG metadata (EXIF thumbnails) may come before the frame header


def decoder_pixel_limit() -> int:
    try:
        return int(os.environ.get(DECODER_PIXEL_LIMIT_ENV, 1 << 30))
    except ValueError:
        return 1 << 30


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2:pos + 4])
        if marker in _JPEG_SOF and pos + 9 <= len(head):
            height, width = struct.unpack(">HH", head[pos + 5:pos + 9])
            return width, height
        pos += 2 + length
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header, or None when the file is not a PNG/JPEG/BMP/WebP image."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if head.startswith(b"BM") and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    return None


def check_image_headers(paths: Iterable[Path], size: int | None) -> None:
    """One ``UserError`` naming the first unreadable, oversized or (with ``size=None``) odd-sized file."""
    limit = decoder_pixel_limit()
    first: tuple[Path, tuple[int, int]] | None = None
    for path in paths:
        try:
            wh = image_size(path)
        except OSError as exc:
            raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None
        if wh is None or 0 in wh:
            raise UserError(f"{path} is not a readable PNG, JPEG, BMP or WebP image; replace or delete it")
        if wh[0] * wh[1] > limit:
            raise UserError(f"{path} is {wh[0]}x{wh[1]} pixels, over the decoder's limit of {limit} "
                            f"({DECODER_PIXEL_LIMIT_ENV}); downscale it or delete it")
        if size is None:
            if first is None:
                first = (path, wh)
            elif wh != first[1]:
                raise UserError(f"{path} is {wh[0]}x{wh[1]} but {first[0]} is {first[1][0]}x{first[1][1]}; with "
                                "size: null every image must have the same size (or set size: 256 to resize)")
