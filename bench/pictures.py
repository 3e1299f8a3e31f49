"""Page-format pictures: the canvas as the page's `DrawingPad.toBlob()` encodes it.

An opaque RGB PNG at the canvas's CSS size (776x448 on the desktop window), `#000` strokes of
the page's line width with round caps and joins on `#fff`, anti-aliased as a canvas draws
them (see `coverage`). The file is
written the way Chromium's encoder writes it (read from its output): 8-bit RGB, every row
with the "Up" filter, zlib at level 1, IDAT chunks of 4 kB. The fixture's `page_png_bytes`,
the sizes the page's own encoder produced, check the result.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from bench.drawings import Drawing, Point, ink_states
from server.png import RGB, UP_FILTER, write_png

ZLIB_LEVEL = 1
IDAT_BYTES = 4096


def render(width: int, height: int, line_width: float, strokes: Sequence[Sequence[Point]]) -> bytes:
    """The page's PNG of a canvas holding these strokes."""
    ink = coverage(width, height, line_width, strokes)
    grey = np.rint(255.0 * (1.0 - ink)).astype(np.uint8)
    return encode_png(np.repeat(grey[..., None], 3, axis=2))


def coverage(
    width: int, height: int, line_width: float, strokes: Sequence[Sequence[Point]]
) -> NDArray[np.float32]:
    """How much of each pixel the pen covers, 0 to 1, anti-aliased as a canvas does it.

    A round-capped, round-joined stroke is the union of capsules around its segments; a
    pixel's coverage is approximated from its centre's distance to the nearest one, which
    gives the smooth grey edges of Skia's anti-aliasing (a dot is a zero-length segment).
    """
    ink = np.zeros((height, width), np.float32)
    radius = line_width / 2.0
    for stroke in strokes:
        segments = list(itertools.pairwise(stroke)) or [(stroke[0], stroke[0])]
        for (x0, y0), (x1, y1) in segments:
            left = max(0, int(min(x0, x1) - radius - 1))
            right = min(width, int(max(x0, x1) + radius + 2))
            top = max(0, int(min(y0, y1) - radius - 1))
            bottom = min(height, int(max(y0, y1) + radius + 2))
            if left >= right or top >= bottom:
                continue
            xs = np.arange(left, right, dtype=np.float32)[None, :] + 0.5 - x0
            ys = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5 - y0
            dx, dy = x1 - x0, y1 - y0
            length_squared = dx * dx + dy * dy
            if length_squared > 0:
                along = np.clip((xs * dx + ys * dy) / length_squared, 0.0, 1.0)
                xs = xs - along * dx
                ys = ys - along * dy
            distance = np.sqrt(xs * xs + ys * ys)
            covered = np.clip(radius + 0.5 - distance, 0.0, 1.0)
            window = ink[top:bottom, left:right]
            np.maximum(window, covered, out=window)
    return ink


def encode_png(pixels: NDArray[np.uint8]) -> bytes:
    """An (H, W, 3) uint8 picture as Chromium encodes a canvas: Up filter, zlib level 1."""
    height, width, _ = pixels.shape
    rows = pixels.reshape(height, width * 3)
    filtered = rows.copy()
    # Byte arithmetic wraps modulo 256, as the Up filter wants.
    filtered[1:] -= rows[:-1]
    scanlines = np.hstack([np.full((height, 1), UP_FILTER, np.uint8), filtered])
    return write_png(scanlines, RGB, ZLIB_LEVEL, IDAT_BYTES)


def drawing_frames(drawing: Drawing) -> list[bytes]:
    """The page's PNG of the canvas after each update of a drawing."""
    return [render(*state) for state in ink_states(drawing)]
