"""Pictures and messages for the server tests: drawn digits as strokes, blanks and bombs.

Digits come from `tests.drawing.DIGIT_PATHS`. The picture of a digit is its strokes message
drawn on the full canvas by `tests.drawing.draw_strokes`: one drawing, two renderings (the
server draws a strokes message straight into the model input), so their answers agree
closely but not exactly.
"""

from __future__ import annotations

import base64
import struct
import zlib

from PIL import Image

from tests.drawing import DIGIT_PATHS, draw_strokes, encode

CANVAS_SIZE = 280
# The digit's box on the canvas: left, top and side, in canvas pixels.
BOX = (40.0, 40.0, 200.0)
LINE_WIDTH = 18.0


def digit_strokes(digit: int) -> list[list[list[float]]]:
    """A digit's pen path as the `strokes` field of a message: canvas pixel coordinates."""
    left, top, size = BOX
    return [[[left + x * size, top + y * size] for x, y in path] for path in DIGIT_PATHS[digit]]


def strokes_message(digit: int | None, seq: int) -> dict[str, object]:
    """The `strokes` message that draws a digit (None: a blank canvas)."""
    return {
        "type": "strokes",
        "seq": seq,
        "width": CANVAS_SIZE,
        "height": CANVAS_SIZE,
        "line_width": LINE_WIDTH,
        "strokes": [] if digit is None else digit_strokes(digit),
    }


def digit_image(digit: int) -> Image.Image:
    """The canvas of a digit's strokes message: black on white, round caps and joins."""
    strokes = [[(x, y) for x, y in stroke] for stroke in digit_strokes(digit)]
    return draw_strokes(strokes, CANVAS_SIZE, CANVAS_SIZE, LINE_WIDTH)


def digit_png(digit: int) -> bytes:
    """A drawn digit as PNG bytes."""
    return encode(digit_image(digit))


def data_url(data: bytes, media_type: str = "image/png") -> str:
    """A base64 data URL, as `canvas.toDataURL()` gives."""
    return f"data:{media_type};base64," + base64.b64encode(data).decode("ascii")


def blank_png(transparent: bool = False) -> bytes:
    """An untouched canvas: white, or transparent black as a fresh browser canvas is."""
    if transparent:
        return encode(Image.new("RGBA", (CANVAS_SIZE, CANVAS_SIZE), (0, 0, 0, 0)))
    return encode(Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 255))


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header declares a huge picture (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # One greyscale row of zeros; the rest is missing, so decoding it would fail anyway.
    pixels = zlib.compress(b"\x00" * (width + 1))
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
