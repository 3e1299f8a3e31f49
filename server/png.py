"""PNG files written directly: a signature, a header, the deflated scanlines, an end.

For small pictures Pillow's encoder spends most of its time setting itself up; here the
caller filters its own scanlines (each starts with its filter type) and this module only
frames them. Used for the 28x28 input the server sends back, and by the bench to write
canvases the way Chromium does.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY = 0  # Colour types: one grey sample, or red, green and blue.
RGB = 2
NO_FILTER = 0  # Filter types a scanline may start with.
UP_FILTER = 2


def write_png(
    scanlines: NDArray[np.uint8], colour_type: int, level: int, chunk_bytes: int | None = None
) -> bytes:
    """A PNG of 8-bit samples from its filtered scanlines: (height, 1 + width * samples)
    bytes, each row starting with its filter type. Deflated at zlib `level`, in IDAT chunks
    of at most `chunk_bytes` (one chunk if None)."""
    samples = 3 if colour_type == RGB else 1
    height, row_bytes = scanlines.shape
    header = struct.pack(">IIBBBBB", (row_bytes - 1) // samples, height, 8, colour_type, 0, 0, 0)
    compressed = zlib.compress(scanlines.tobytes(), level)
    step = chunk_bytes or max(len(compressed), 1)
    parts = [SIGNATURE, _chunk(b"IHDR", header)]
    parts.extend(_chunk(b"IDAT", compressed[start : start + step])
                 for start in range(0, len(compressed), step))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def grey_png(pixels: NDArray[np.uint8]) -> bytes:
    """An 8-bit greyscale PNG of a 2-D array: rows unfiltered, zlib's default level."""
    height, width = pixels.shape
    scanlines = np.zeros((height, width + 1), dtype=np.uint8)
    scanlines[:, 1:] = pixels  # Column 0: each row's filter type, NO_FILTER.
    return write_png(scanlines, GREY, zlib.Z_DEFAULT_COMPRESSION)


def _chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data and the CRC of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
