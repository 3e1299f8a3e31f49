"""What a message costs the server, estimated before the work is done.

Admission and scheduling count cost, not messages: a strokes message at the limits or a
picture of `max_pixels` costs a thousand times what a page's ink update does. The estimate is
in milliseconds of one core, from what is known when a message arrives (the time spent
parsing it is measured, not estimated, by the session):
- pixels decoded, read from the picture's header (PNG's is read directly; other formats
  through Pillow's lazy open, which reads no pixel data);
- points drawn (ink is rendered at model scale, so the pen's width costs nothing more).

The constants were measured on the 2-core development machine (see `python -m bench.costs`)
and rounded up; they only need to be right within a factor of two or so.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
from typing import Final

from PIL import Image

from server.images import FORMATS

# Receiving a message, the session's bookkeeping and sending its answer.
MESSAGE_MS: Final = 0.15
# Decoding and preprocessing a picture, per pixel of its header's size.
DECODE_MS_PER_PIXEL: Final = 2.5e-5
# Rendering ink at model scale, per point of the whole drawing.
DRAW_MS_PER_POINT: Final = 1.5e-3
DRAW_MS: Final = 0.2
# Drawing one group of pieces when a drawing is split, beyond its points, and the most
# pieces in a group.
GROUP_MS: Final = 0.3
GROUP_PIECES: Final = 4
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# Enough base64 of a data URL for a PNG's header (signature and IHDR: 24 bytes).
HEADER_BASE64_CHARS: Final = 44


def picture_pixels(image: bytes | str, max_pixels: int) -> int:
    """The pixels a picture declares (bounded by `max_pixels`, which is refused later)."""
    header = _header_bytes(image)
    if header.startswith(PNG_SIGNATURE) and len(header) >= 24:
        width, height = struct.unpack(">II", header[16:24])
        return min(int(width) * int(height), max_pixels)
    if isinstance(image, str):
        # Not a PNG: a JPEG's size lies after its markers, so decode the whole text.
        try:
            image = base64.b64decode(image.partition(",")[2] or image, validate=False)
        except (binascii.Error, ValueError):
            return 0
    try:
        with Image.open(io.BytesIO(image), formats=FORMATS) as opened:
            width, height = opened.size
    except Exception:
        # Not a picture at all: it is refused as soon as decoding starts, for nothing.
        return 0
    return min(width * height, max_pixels)


def picture_cost_ms(image: bytes | str, max_pixels: int) -> float:
    """The estimated work of decoding and preprocessing a picture, in milliseconds."""
    return picture_pixels(image, max_pixels) * DECODE_MS_PER_PIXEL


def drawing_cost_ms(points: int) -> float:
    """The estimated work of rendering a drawing of `points` points, in milliseconds."""
    return DRAW_MS + points * DRAW_MS_PER_POINT


def split_cost_ms(decode_ms: float, pieces: int) -> float:
    """The estimated work of splitting a drawing of `pieces` pieces whose whole cost
    `decode_ms`, for scheduling: it is read again, and every group of up to four neighbouring
    pieces is drawn, so each piece is drawn once per group that holds it (up to ten times).
    A 4-digit number of 5 strokes: 9 ms estimated, 4-7 ms measured. What a connection is
    charged is the split's measured time, which is less when its earlier groups are kept."""
    sizes = [min(GROUP_PIECES, pieces - first) for first in range(pieces)]
    groups = sum(sizes)
    coverage = sum(size * (size + 1) // 2 for size in sizes) / max(pieces, 1)
    return decode_ms * (1 + coverage) + groups * GROUP_MS


def _header_bytes(image: bytes | str) -> bytes:
    if isinstance(image, bytes):
        return image[:24]
    text = image.partition(",")[2] if image.startswith("data:") else image
    try:
        return base64.b64decode(text[:HEADER_BASE64_CHARS], validate=False)
    except (binascii.Error, ValueError):
        return b""
