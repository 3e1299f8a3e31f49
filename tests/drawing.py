"""Synthetic digit drawings for tests: a few pen paths rendered at any size, place and colour."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw

# Pen paths in a unit box (x right, y down), as a person draws them.
DIGIT_PATHS: dict[int, list[list[tuple[float, float]]]] = {
    0: [
        [
            (
                0.5 + 0.32 * math.sin(2 * math.pi * step / 36),
                0.5 - 0.45 * math.cos(2 * math.pi * step / 36),
            )
            for step in range(37)
        ]
    ],
    1: [[(0.42, 0.18), (0.55, 0.05), (0.55, 0.95)]],
    4: [[(0.6, 0.05), (0.12, 0.65), (0.85, 0.65)], [(0.62, 0.3), (0.62, 0.95)]],
    7: [[(0.12, 0.08), (0.88, 0.08), (0.4, 0.95)]],
}


def draw_digit(
    digit: int,
    canvas: tuple[int, int] = (280, 280),
    box: tuple[float, float, float] = (40, 40, 200),
    line_width: float = 20,
    ink: tuple[int, ...] = (0, 0, 0),
    paper: tuple[int, ...] = (255, 255, 255),
    mode: str = "RGB",
) -> Image.Image:
    """Draw a digit's pen path into a box (left, top, size) on a canvas of any mode."""
    left, top, size = box
    single_band = len(Image.new(mode, (1, 1)).getbands()) == 1
    picture = Image.new(mode, canvas, paper[0] if single_band else paper)
    pen = ImageDraw.Draw(picture)
    colour = ink[0] if single_band else ink
    radius = line_width / 2
    for stroke in DIGIT_PATHS[digit]:
        points = [(left + x * size, top + y * size) for x, y in stroke]
        pen.line(points, fill=colour, width=max(1, round(line_width)), joint="curve")
        for x, y in points:
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return picture


def encode(picture: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    """The picture's bytes in a file format."""
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()
