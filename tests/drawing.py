"""Synthetic digit drawings for tests: pen paths for all ten digits, drawn at any size, place
and colour, varied at random like handwriting, and drawn on a full canvas as a browser would.
"""

from __future__ import annotations

import io
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

Point = tuple[float, float]
Strokes = list[list[Point]]


def arc(
    centre: Point, radii: Point, start: float, end: float, steps: int = 24
) -> list[Point]:
    """Points on an elliptic arc; angles in degrees, clockwise from the top (0 up, 90 right)."""
    (x, y), (across, down) = centre, radii
    angles = (math.radians(start + (end - start) * step / steps) for step in range(steps + 1))
    return [(x + across * math.sin(angle), y - down * math.cos(angle)) for angle in angles]


# Pen paths in a unit box (x right, y down), as a person draws them.
DIGIT_PATHS: dict[int, list[list[Point]]] = {
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
    2: [[*arc((0.5, 0.3), (0.3, 0.24), -70, 125), (0.12, 0.93), (0.9, 0.93)]],
    3: [arc((0.48, 0.27), (0.3, 0.21), -65, 180) + arc((0.48, 0.7), (0.34, 0.23), 0, 235)[1:]],
    4: [[(0.6, 0.05), (0.12, 0.65), (0.85, 0.65)], [(0.62, 0.3), (0.62, 0.95)]],
    5: [
        [(0.3, 0.07), (0.26, 0.46), *arc((0.49, 0.68), (0.31, 0.25), -60, 235)],
        [(0.3, 0.07), (0.84, 0.07)],
    ],
    6: [arc((0.66, 0.62), (0.44, 0.56), -10, -100) + arc((0.5, 0.71), (0.28, 0.24), -100, 260)],
    7: [[(0.12, 0.08), (0.88, 0.08), (0.4, 0.95)]],
    8: [
        arc((0.5, 0.27), (0.24, 0.21), 180, -180, 36),
        arc((0.5, 0.71), (0.29, 0.24), 0, 360, 36),
    ],
    9: [[*arc((0.46, 0.3), (0.28, 0.25), 90, -270, 36), (0.72, 0.55), (0.67, 0.95)]],
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


def draw_strokes(
    strokes: Sequence[Sequence[Point]],
    width: int,
    height: int,
    line_width: float,
    supersampling: int = 1,
) -> Image.Image:
    """Draw pen strokes on a full canvas: `#000` on `#fff` ("L"), round caps and joins.

    Pillow's wide lines have square ends and open corners, so a disc of the pen's width is
    drawn at every point: that rounds the caps and joins the way a canvas with
    `lineCap = lineJoin = "round"` does, and a single-point stroke becomes a dot. With
    `supersampling` above 1 the canvas is drawn that many times larger and box-reduced, so
    its edges are anti-aliased the way a browser's are.
    """
    scale = supersampling
    image = Image.new("L", (width * scale, height * scale), 255)
    pen = ImageDraw.Draw(image)
    radius = line_width * scale / 2
    for stroke in strokes:
        points = [(x * scale, y * scale) for x, y in stroke]
        if len(points) > 1:
            pen.line(points, fill=0, width=max(1, round(line_width * scale)))
        for x, y in points:
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    return image.reduce(scale) if scale > 1 else image


def pen_path(
    digit: int, generator: random.Random, canvas: tuple[int, int], points: int = 300
) -> Strokes:
    """A digit as a person might draw it on a canvas: slanted, stretched, placed, shaky.

    Each stroke is sampled evenly, about `points` points in all, the way pointer events
    arrive, and every point is nudged by a little hand tremor.
    """
    width, height = canvas
    size = generator.uniform(0.3, 0.85) * min(width, height)
    slant = generator.uniform(-0.3, 0.25)
    aspect = generator.uniform(0.65, 1.15)
    turn = math.radians(generator.uniform(-10, 10))
    left = generator.uniform(0.02 * width, max(0.02 * width, width - size * 1.05))
    top = generator.uniform(0.02 * height, max(0.02 * height, height - size))
    tremor = generator.uniform(0.0, 0.006) * size
    hand = Hand(left, top, size, slant, aspect, turn, tremor)
    paths = [_wobbled(path, generator) for path in DIGIT_PATHS[digit]]
    total = sum(_length(path) for path in paths)
    strokes: Strokes = []
    for path in paths:
        count = max(2, round(points * _length(path) / total))
        strokes.append([hand.place(point, generator) for point in _resampled(path, count)])
    return strokes


@dataclass(frozen=True)
class Hand:
    """How a hand puts a drawing of the unit square on a canvas: sized, slanted, turned, shaky."""

    left: float
    top: float
    size: float
    slant: float
    aspect: float
    turn: float  # Radians.
    tremor: float  # Pixels, the standard deviation of each point's nudge.

    def place(self, point: Point, generator: random.Random) -> Point:
        """A point of the unit square, on the canvas."""
        x, y = (point[0] - 0.5) * self.aspect - self.slant * (point[1] - 0.5), point[1] - 0.5
        cos, sin = math.cos(self.turn), math.sin(self.turn)
        x, y = x * cos - y * sin, x * sin + y * cos
        return (
            self.left + self.size * (0.5 + x) + generator.gauss(0.0, self.tremor),
            self.top + self.size * (0.5 + y) + generator.gauss(0.0, self.tremor),
        )


def _wobbled(path: Sequence[Point], generator: random.Random) -> list[Point]:
    """A path with each corner moved a little: no two hands draw a digit alike."""
    return [(x + generator.gauss(0.0, 0.025), y + generator.gauss(0.0, 0.025)) for x, y in path]


def _length(path: Sequence[Point]) -> float:
    """The length of a polyline."""
    return sum(math.dist(first, second) for first, second in itertools.pairwise(path))


def _resampled(path: Sequence[Point], count: int) -> list[Point]:
    """`count` points evenly spaced along a polyline, its two ends included."""
    total = _length(path)
    walked = [0.0]
    for first, second in itertools.pairwise(path):
        walked.append(walked[-1] + math.dist(first, second))
    result = []
    segment = 0
    for index in range(count):
        target = total * index / (count - 1)
        while segment < len(path) - 2 and walked[segment + 1] < target:
            segment += 1
        (x0, y0), (x1, y1) = path[segment], path[segment + 1]
        step = walked[segment + 1] - walked[segment]
        fraction = 0.0 if step == 0.0 else min(1.0, (target - walked[segment]) / step)
        result.append((x0 + (x1 - x0) * fraction, y0 + (y1 - y0) * fraction))
    return result


def encode(picture: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    """The picture's bytes in a file format."""
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()
