"""Post-processing operations a shared image goes through, applied to stored adversarial sets.

Every operation maps a batch ``(B,3,H,W)`` float in [0,1] to a batch of the same shape, as an
8-bit image file would hold it (values on the k/255 grid). Names:

- ``jpeg<Q>`` (``jpeg75``, ``jpeg90``, any integer quality 1-100): a real JPEG round trip through
  Pillow (libjpeg): the image is rounded to 8 bits, encoded at quality Q with 4:2:0 chroma
  subsampling (the default of Pillow, OpenCV and most encoders at these qualities) and the
  standard tables, and decoded again.
- ``resize<F>`` (``resize0.5``, any factor 0 < F < 1): down to ``round(F*H) x round(F*W)`` and back
  up, both with bilinear interpolation (``torch.nn.functional.interpolate``, antialiased on the
  way down, half-pixel centres), then rounded to 8 bits. At F = 0.5 the antialiasing filter is
  the 4-tap [1 3 3 1]/8, which cancels a one-pixel checkerboard exactly.

Custom operations register under a fixed name with ``@register_postprocess("name")`` over a
function ``(x01) -> x01``; families with a parameter register a pattern with
``register_postprocess_family``. ``get_postprocess(name)`` resolves a name or raises
``UserError`` with a did-you-mean.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.errors import UserError

PostProcess = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Family:
    """Names matching ``pattern`` (one capture group, the parameter) build ``factory(parameter)``."""

    pattern: re.Pattern
    factory: Callable[[str], PostProcess]
    examples: tuple[str, ...]
    help: str


_NAMED: dict[str, PostProcess] = {}
_FAMILIES: list[Family] = []


def register_postprocess(name: str) -> Callable[[PostProcess], PostProcess]:
    """Decorator: register ``fn(x01) -> x01`` under the fixed ``name``."""

    def wrap(fn: PostProcess) -> PostProcess:
        _NAMED[name] = fn
        return fn

    return wrap


def register_postprocess_family(pattern: str, examples: tuple[str, ...], help: str = "") -> Callable:
    """Decorator over ``factory(parameter: str) -> fn``: names that fully match ``pattern`` (with
    one capture group) build their operation from it. The factory raises ``UserError`` for a
    parameter out of range."""

    def wrap(factory: Callable[[str], PostProcess]) -> Callable[[str], PostProcess]:
        _FAMILIES.append(Family(re.compile(pattern), factory, examples, help))
        return factory

    return wrap


def known_names() -> list[str]:
    """Fixed names and one example of each family (for help texts and did-you-mean)."""
    return sorted(_NAMED) + [e for f in _FAMILIES for e in f.examples]


def get_postprocess(name: str) -> PostProcess:
    """The operation called ``name``; an unknown name is a ``UserError`` with a did-you-mean."""
    if name in _NAMED:
        return _NAMED[name]
    for family in _FAMILIES:
        match = family.pattern.fullmatch(name)
        if match:
            return family.factory(match.group(1))
    close = difflib.get_close_matches(name, known_names(), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    families = "; ".join(f.help for f in _FAMILIES if f.help)
    raise UserError(f"unknown postprocess {name!r}.{hint} Known: {', '.join(known_names())} ({families}).")


def validate_postprocess(names: list[str]) -> None:
    """Resolve every name up front, so a typo fails before any work."""
    for name in names:
        get_postprocess(name)


def apply_postprocess(name: str, x01: torch.Tensor) -> torch.Tensor:
    return get_postprocess(name)(x01)


# -- built-ins -----------------------------------------------------------------------------------

def to_uint8(x01: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) [0,1] -> (B,H,W,3) uint8, rounded (how an image library saves a float image)."""
    return (x01.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(device=like.device, dtype=torch.float32) / 255


def jpeg_roundtrip(x01: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode every image as JPEG at ``quality`` (4:2:0) with Pillow and decode it again."""
    decoded = []
    for image in to_uint8(x01):  # one file per image, as on disk
        buffer = io.BytesIO()
        Image.fromarray(image, mode="RGB").save(buffer, format="JPEG", quality=quality, subsampling=2)
        buffer.seek(0)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return from_uint8(np.stack(decoded), x01)


def resize_roundtrip(x01: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear down (antialiased) by ``factor`` and bilinear back up, rounded to 8 bits."""
    h, w = x01.shape[-2:]
    small = (max(1, round(h * factor)), max(1, round(w * factor)))
    down = F.interpolate(x01.float(), size=small, mode="bilinear", align_corners=False, antialias=True)
    up = F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round() / 255


@register_postprocess_family(r"jpeg(\d+)", examples=("jpeg75", "jpeg90"), help="jpeg<quality 1-100>")
def jpeg(quality: str) -> PostProcess:
    q = int(quality)
    if not 1 <= q <= 100:
        raise UserError(f"postprocess jpeg{quality}: JPEG quality must be 1-100.")
    return lambda x01: jpeg_roundtrip(x01, q)


@register_postprocess_family(r"resize(\d*\.?\d+)", examples=("resize0.5",), help="resize<factor in (0,1)>")
def resize(factor: str) -> PostProcess:
    f = float(factor)
    if not 0 < f < 1:
        raise UserError(f"postprocess resize{factor}: the factor must lie strictly between 0 and 1.")
    return lambda x01: resize_roundtrip(x01, f)
