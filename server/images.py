"""Turn untrusted bytes, base64 or data URLs into a decoded Pillow image, within limits.

Owns the defences against hostile pictures: a byte limit, a pixel limit checked from the
header before any pixel is decoded (a decompression bomb declares a huge size in a tiny
file), and a short list of formats, so Pillow's rarer plugins never see client input.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from typing import Literal

from PIL import Image

from model.preprocess import WORKING_SIZE

# The formats browsers produce and the HTTP API names; any other file is not a picture here.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MEDIA_TYPES = frozenset(f"image/{name}" for name in ("png", "jpeg", "webp", "gif", "bmp"))

# Pillow warns, rather than fails, for pictures between MAX_IMAGE_PIXELS and twice that; the
# warning becomes an error so that such a picture is refused like any other bomb.
warnings.simplefilter("error", Image.DecompressionBombWarning)


class ImageError(Exception):
    """A picture the server refuses: `bad_image` (undecodable) or `too_large`."""

    def __init__(self, code: Literal["bad_image", "too_large"], message: str) -> None:
        super().__init__(message)
        self.code: Literal["bad_image", "too_large"] = code
        self.message = message


def decode_text(text: str, max_bytes: int) -> bytes:
    """The bytes of a data URL (`data:image/png;base64,...`) or of bare base64."""
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ImageError("bad_image", "a data URL must be base64-encoded")
    # Checked before decoding, so a huge string is refused without a copy of it.
    if len(text) // 4 * 3 > max_bytes + 2:
        raise ImageError("too_large", f"picture is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("bad_image", "invalid base64") from None
    if len(data) > max_bytes:
        raise ImageError("too_large", f"picture is over the limit of {max_bytes} bytes")
    return data


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode picture bytes, refusing from the header any picture over `max_pixels`."""
    if not data:
        raise ImageError("bad_image", "no picture: the data is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too_large", f"picture is over the limit of {max_pixels} pixels") from None
    except Exception:
        # Pillow's readers raise an open-ended set of types on malformed input.
        raise ImageError("bad_image", "not a PNG, JPEG, WebP, GIF or BMP picture") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            "too_large", f"picture of {width}x{height} is over the limit of {max_pixels} pixels"
        )
    if width < 1 or height < 1:
        raise ImageError("bad_image", f"picture of {width}x{height} has no pixels")
    longest = max(width, height)
    if image.format == "JPEG" and longest > WORKING_SIZE:
        # Decode a large JPEG at 1/2, 1/4 or 1/8 scale: preprocessing would shrink it anyway.
        factor = math.ceil(longest / WORKING_SIZE)
        image.draft("RGB", (width // factor, height // factor))
    try:
        image.load()
    except Exception:
        raise ImageError("bad_image", "the picture data is truncated or corrupt") from None
    return image
