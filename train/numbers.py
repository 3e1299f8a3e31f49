"""Measure how well whole numbers are read: MNIST test digits placed side by side as canvases.

Run:  .venv/bin/python -m train.numbers --model artifacts/model-v2/digits.keras [--count 1000]

Each number has 2 to 6 MNIST test digits (never seen in training). Each digit is cut to its
ink, scaled to the number's height (with up to 15 % difference between digits), slanted by
the number's shear, and placed after the previous one with realistic spacing: from touching
to half a digit apart. The number is drawn as dark ink on a white canvas and encoded as a
PNG, then read as the server will read a picture: `model/preprocess.py`'s ink map, then
`model/numbers.py`'s pieces, candidates and search, scored by the model.

Reported: exact reading of the whole number by length, and each wrong number's fault.
Segmentation is at fault when the reading does not have one character per digit at the
right places (its boxes do not each overlap the matching digit most); otherwise a digit was
classified wrong.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.inference import Classifier
from model.numbers import (
    Box,
    NumberReading,
    candidates,
    is_one_digit,
    picture_pieces,
    read_number,
    whole_reading,
)
from model.preprocess import ink_map, to_model_input
from train.data import load_mnist


@dataclass(frozen=True)
class Config:
    """The numbers set; every figure comes from one of these."""

    seed: int = 2026  # Seeds the choice of digits and their placing.
    count: int = 1000  # Numbers in the set, lengths 2-6 in turn.
    height_px: tuple[int, int] = (60, 160)  # Range of the number's digit height.
    size_change: float = 0.15  # Digits of one number differ in height by up to this share.
    shear: tuple[float, float] = (-0.25, 0.25)  # The number's slant (x shift per unit of y).
    gap: tuple[float, float] = (0.0, 0.5)  # Space before each digit, as a share of height.
    margin_px: int = 24  # Paper around the number.


@dataclass(frozen=True)
class DrawnNumber:
    """A number drawn on a canvas, with its digits and where each one lies."""

    text: str
    png: bytes
    boxes: tuple[Box, ...]


def draw_number(
    images: NDArray[np.uint8], labels: NDArray[np.uint8], config: Config,
    generator: np.random.Generator, length: int,
) -> DrawnNumber:
    """One number of `length` random test digits, as a PNG of dark ink on white."""
    chosen = generator.choice(len(images), size=length, replace=False)
    height = int(generator.integers(*config.height_px))
    shear = float(generator.uniform(*config.shear))
    pieces: list[Image.Image] = []
    for index in chosen:
        digit = images[index]
        rows = np.flatnonzero(digit.max(axis=1) > 0)
        columns = np.flatnonzero(digit.max(axis=0) > 0)
        cut = Image.fromarray(digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1])
        scale = height * (1 + generator.uniform(-config.size_change, config.size_change))
        scale /= cut.height
        size = (max(1, round(cut.width * scale)), max(1, round(cut.height * scale)))
        scaled = cut.resize(size, Image.Resampling.BICUBIC)
        # Shear about the digit's middle row, widening the picture to keep every pixel.
        spread = abs(shear) * scaled.height
        sheared = scaled.transform(
            (round(scaled.width + spread), scaled.height), Image.Transform.AFFINE,
            (1, shear, -spread if shear > 0 else 0, 0, 1, 0), Image.Resampling.BICUBIC,
        )
        pieces.append(sheared)
    tallest = max(piece.height for piece in pieces)
    lefts, x = [], config.margin_px
    for number, piece in enumerate(pieces):
        if number:
            x += round(generator.uniform(*config.gap) * height)
        lefts.append(x)
        x += _ink_width(piece)
    canvas = Image.new("L", (x + config.margin_px, tallest + 2 * config.margin_px), 0)
    boxes = []
    for left, piece in zip(lefts, pieces, strict=True):
        top = config.margin_px + (tallest - piece.height) // 2
        shift = _ink_left(piece)
        canvas.paste(
            Image.fromarray(np.maximum(
                np.asarray(canvas.crop((left - shift, top, left - shift + piece.width,
                                        top + piece.height))),
                np.asarray(piece),
            )),
            (left - shift, top),
        )
        boxes.append((float(left), float(top), float(left + _ink_width(piece)),
                      float(top + piece.height)))
    paper = Image.eval(canvas, lambda value: 255 - value)
    buffer = io.BytesIO()
    paper.convert("RGB").save(buffer, format="PNG")
    text = "".join(str(int(labels[index])) for index in chosen)
    return DrawnNumber(text, buffer.getvalue(), tuple(boxes))


def _ink_left(piece: Image.Image) -> int:
    return int(np.flatnonzero(np.asarray(piece).max(axis=0) > 40)[0])


def _ink_width(piece: Image.Image) -> int:
    columns = np.flatnonzero(np.asarray(piece).max(axis=0) > 40)
    return int(columns[-1] - columns[0] + 1)


def read_picture(png: bytes, classifier: Classifier, threshold: float) -> NumberReading | None:
    """Read a number out of picture bytes, as the server will."""
    ink = ink_map(Image.open(io.BytesIO(png)))
    whole = to_model_input(Image.open(io.BytesIO(png)))
    if whole is None:
        return None
    row = classifier.predict(whole[None])[0]
    pieces = picture_pieces(ink)
    if is_one_digit(row, threshold) or len(pieces) <= 1:
        return whole_reading(row, _ink_box(ink), threshold)
    found = candidates(pieces, ink=ink)
    if not found:
        return None
    probabilities = classifier.predict(np.stack([c.model_input for c in found]))
    return read_number(pieces, found, probabilities, threshold)


def _ink_box(ink: NDArray[np.float32]) -> Box:
    rows = np.flatnonzero(ink.max(axis=1) > 0)
    columns = np.flatnonzero(ink.max(axis=0) > 0)
    return (float(columns[0]), float(rows[0]), float(columns[-1] + 1), float(rows[-1] + 1))


def segmented_right(reading: NumberReading | None, boxes: tuple[Box, ...]) -> bool:
    """One character per digit, each overlapping its own digit more than any other."""
    if reading is None or len(reading.digits) != len(boxes):
        return False
    for number, character in enumerate(reading.digits):
        overlaps = [_overlap(character.box, box) for box in boxes]
        if int(np.argmax(overlaps)) != number:
            return False
    return True


def _overlap(first: Box, second: Box) -> float:
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    return max(0.0, width) * max(0.0, height)


def main(argv: list[str] | None = None) -> int:
    """Build the set, read it, print and return the figures."""
    parser = argparse.ArgumentParser(prog="python -m train.numbers", description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--count", type=int, default=Config.count)
    parser.add_argument("--data", type=Path, default=None)
    arguments = parser.parse_args(argv)
    config = Config(count=arguments.count)
    metrics = json.loads(arguments.model.with_name("metrics.json").read_text())
    threshold = float(metrics.get("not_digit_threshold", 1.0))
    classifier = Classifier(arguments.model)
    mnist = load_mnist(arguments.data)
    generator = np.random.default_rng(config.seed)
    right: dict[int, list[bool]] = {}
    faults = {"segmentation": 0, "classification": 0}
    started = time.perf_counter()
    for number in range(config.count):
        length = 2 + number % 5
        drawn = draw_number(mnist.test_images, mnist.test_labels, config, generator, length)
        reading = read_picture(drawn.png, classifier, threshold)
        correct = reading is not None and reading.text == drawn.text
        right.setdefault(length, []).append(correct)
        if not correct:
            fault = "classification" if segmented_right(reading, drawn.boxes) else "segmentation"
            faults[fault] += 1
    every = [value for values in right.values() for value in values]
    figures = {
        "exact": float(np.mean(every)),
        "by_length": {length: float(np.mean(values)) for length, values in sorted(right.items())},
        "wrong_by_fault": faults,
        "numbers": len(every),
        "ms_per_number": 1000 * (time.perf_counter() - started) / len(every),
        "threshold": threshold,
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
