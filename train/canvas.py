"""Draw MNIST digits as a browser canvas would send them, to measure robustness.

Each digit is upscaled to a random size and position on a 280x280 picture, then encoded the
way pictures reach the server: a PNG with dark ink on a transparent background (what
`canvas.toDataURL` gives), light ink on an opaque dark background, or a JPEG of dark ink on
white paper.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

CANVAS_SIZE = 280
STYLES = ("transparent_png", "inverted_png", "jpeg")


def canvas_picture(digit: NDArray[np.uint8], generator: np.random.Generator) -> tuple[bytes, str]:
    """Encode one 28x28 MNIST digit as canvas picture bytes; returns (bytes, style)."""
    size = int(generator.integers(84, 252))
    left = int(generator.integers(0, CANVAS_SIZE - size + 1))
    top = int(generator.integers(0, CANVAS_SIZE - size + 1))
    ink = Image.fromarray(digit, mode="L").resize((size, size), Image.Resampling.BICUBIC)
    alpha = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    alpha.paste(ink, (left, top))
    style = STYLES[int(generator.integers(0, len(STYLES)))]
    buffer = io.BytesIO()
    if style == "transparent_png":
        # Canvas pixels never painted are transparent black: (0, 0, 0, 0).
        picture = Image.new("RGBA", alpha.size, (0, 0, 0, 0))
        picture.putalpha(alpha)
        picture.save(buffer, format="PNG")
    elif style == "inverted_png":
        Image.merge("RGB", (alpha, alpha, alpha)).save(buffer, format="PNG")
    else:
        paper = Image.eval(alpha, lambda value: 255 - value)
        Image.merge("RGB", (paper, paper, paper)).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue(), style


def canvas_set(images: NDArray[np.uint8], seed: int = 7) -> list[tuple[bytes, str]]:
    """Canvas pictures for a set of digits, reproducibly."""
    generator = np.random.default_rng(seed)
    return [canvas_picture(image, generator) for image in images]
