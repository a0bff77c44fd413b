"""Figures embedded in the page as data URIs, under a size bound.

Every image is scaled down to at most ``MAX_SIDE`` pixels on its longer side and stored as PNG
(plots stay sharp) or, when the PNG exceeds ``MAX_IMAGE_BYTES``, as JPEG (photo grids such as
the explanation figures), shrinking further until it fits. All images of a page together take
at most ``IMAGE_BUDGET_BYTES`` before base64 (which adds a third); a figure past the budget is
left out and named by its path in the run folder instead. So a page holds at most
``IMAGE_BUDGET_BYTES * 4 / 3`` bytes of images plus its tables.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

MAX_SIDE = 1600
MAX_IMAGE_BYTES = 600_000
IMAGE_BUDGET_BYTES = 8_000_000
JPEG_QUALITY = 85


@dataclass
class Embedded:
    """One figure: ``uri`` is a data URI, or None when the budget left it out (``note`` says why)."""

    name: str
    path: Path
    uri: str | None
    width: int = 0
    height: int = 0
    note: str = ""


def encode(path: Path) -> tuple[str, bytes, tuple[int, int]]:
    """(mime type, bytes, (width, height)) of ``path`` scaled and compressed within the limits."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    png = _save(image, "PNG", optimize=True)
    if len(png) <= MAX_IMAGE_BYTES:
        return "image/png", png, image.size
    rgb = _on_white(image)
    while True:
        jpeg = _save(rgb, "JPEG", quality=JPEG_QUALITY, optimize=True)
        if len(jpeg) <= MAX_IMAGE_BYTES or max(rgb.size) < 64:
            return "image/jpeg", jpeg, rgb.size
        rgb = rgb.resize((max(1, rgb.width * 3 // 4), max(1, rgb.height * 3 // 4)), Image.Resampling.LANCZOS)


def _save(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _on_white(image):
    """JPEG has no alpha: flatten transparent pixels onto white (the page's background)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


class ImageBudget:
    """Embeds figures in call order until ``IMAGE_BUDGET_BYTES`` are spent."""

    def __init__(self, budget: int = IMAGE_BUDGET_BYTES):
        self.budget = budget
        self.used = 0

    def embed(self, path: Path, name: str, run_root: Path) -> Embedded:
        where = path.relative_to(run_root) if path.is_relative_to(run_root) else path
        try:
            mime, data, (width, height) = encode(path)
        except OSError as exc:  # unreadable or truncated image: say so on the page, keep going
            return Embedded(name, path, None, note=f"{where} could not be read ({exc})")
        if self.used + len(data) > self.budget:
            return Embedded(name, path, None, note=f"left out to keep the page under its size bound; see {where}")
        self.used += len(data)
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        return Embedded(name, path, uri, width, height)
