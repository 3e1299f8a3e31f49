"""Turn what callers hold (a path, bytes, a Pillow image) into image bytes for the wire."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

# What a caller may hand over as a picture: a file path, encoded image bytes, a Pillow image.
ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image

# Pillow modes that PNG stores as they are; anything else is converted first.
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})

# Leading bytes of the formats the server accepts, for the HTTP part's Content-Type.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def image_bytes(source: ImageSource) -> bytes:
    """The encoded bytes of a picture: a file's contents, the bytes themselves, or a PNG."""
    if isinstance(source, Image.Image):
        return png_bytes(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    return Path(source).read_bytes()


def png_bytes(image: Image.Image) -> bytes:
    """Encode a Pillow image as PNG, converting modes PNG cannot store."""
    if image.mode not in _PNG_MODES:
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def media_type(image: bytes) -> str:
    """The image's MIME type from its first bytes; `application/octet-stream` if unknown."""
    for signature, kind in _SIGNATURES:
        if image.startswith(signature):
            return kind
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
