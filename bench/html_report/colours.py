"""Cell colours of the ASR matrices on the HTML page.

The scale is matplotlib's ``magma``, the map of the heatmap figures next to each table (so the
table and its figure read the same way). Its lightness rises monotonically from 0 % to 100 %,
so the order of the cells survives every kind of colour-blindness and a greyscale print. The
text colour of each cell is whichever of black or white has the larger WCAG contrast ratio
with the background.
"""

from __future__ import annotations

import math

ASR_COLORMAP = "magma"
BLACK, WHITE = "#000000", "#ffffff"


def _channel(c: float) -> float:
    """sRGB channel (0-1) to linear light, as WCAG 2 defines it."""
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(a: str, b: str) -> float:
    hi, lo = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background``."""
    return BLACK if contrast_ratio(background, BLACK) >= contrast_ratio(background, WHITE) else WHITE


def scale_colour(value: float, vmin: float = 0.0, vmax: float = 100.0) -> str | None:
    """The background colour of a cell, or None for a missing value (n/a cells stay plain)."""
    if value is None or not math.isfinite(value):
        return None
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    position = min(max((value - vmin) / (vmax - vmin), 0.0), 1.0)
    return to_hex(colormaps[ASR_COLORMAP](position))


def legend_stops(n: int = 11) -> list[tuple[float, str]]:
    """(percent, colour) stops for the CSS gradient of the page's colour legend."""
    return [(100 * i / (n - 1), scale_colour(100 * i / (n - 1))) for i in range(n)]
