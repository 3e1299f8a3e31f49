"""Measure how well numbers, single digits and non-digits are read, as the server reads them.

Run:  .venv/bin/python -m train.numbers --model model/digits.keras [--count 400] [--serve]

Writes the figures to numbers-metrics.json beside the model and prints them. Five sets:
(a) `pictures`: numbers of 2 to 6 MNIST test digits (never seen in training). Each digit is
    cut to its ink, scaled to the number's height (with up to 15 % difference between
    digits), slanted by the number's shear, and placed after the previous one with realistic
    spacing: from touching to half a digit apart. The number is drawn as dark ink on a white
    canvas and encoded as a PNG, then read as the server will read a picture:
    `model/preprocess.py`'s ink map, the whole picture first, and only when it is not one
    digit `model/numbers.py`'s pieces, candidates and search, scored by the model.
(b) `ink`: numbers of 2 to 6 MNIST test digits written as pen strokes along their skeletons
    (`train.ink_numbers`) on the page's wide canvas, read as the server reads its ink (every
    stroke a piece). With `--url` or `--serve`, also streamed point by point to a real
    server as `ink` messages: that figure is the final answer's `number.text`.
(c) `digits`: MNIST test digits alone as canvas pictures (`train.canvas`, training's seed):
    read as a one-character number, and how many are rejected as not a digit.
(d) `nondigits`: `train.nondigits`' held-out non-digits (from MNIST test, training's
    evaluation seed) as canvas pictures: how many are rejected as one digit.
(e) `ink_letters`: `train.nondigits`' letters and symbols written as ink, stroke by stroke
    (`train.ink_numbers.write_shape`), read as the server reads ink: how many read with a
    `?` (training draws the same shapes as pictures: this is no held-out figure).

For (a) and (b): exact reading of the whole number by length, and each wrong number's fault.
Segmentation is at fault when the reading does not have one character per digit at the
right places (its boxes do not each overlap the matching digit most); otherwise a digit was
classified wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model import METRICS_PATH, MODEL_PATH
from model.inference import Classifier
from model.numbers import (
    Box,
    NumberReading,
    candidates,
    is_one_digit,
    may_hold_several,
    picture_pieces,
    read_number,
    whole_reading,
)
from model.preprocess import (
    FloatArray,
    ink_map,
    ink_to_model_input,
    to_model_input,
    to_model_input_and_box,
)
from model.strokes import strokes_to_model_input
from train.canvas import canvas_picture, canvas_set
from train.data import Mnist, load_mnist
from train.ink_numbers import (
    InkConfig,
    InkNumber,
    draw_ink_number,
    read_ink,
    read_strokes,
    stream_ink,
    write_shape,
)
from train.nondigits import EVALUATION_SHARES, LETTERS, SYMBOLS, make_nondigits

NUMBERS_METRICS = "numbers-metrics.json"
# The canvas set's seed in training's figures (`train.canvas.canvas_set`'s default).
CANVAS_SEED = 7
# Training's held-out non-digits come from this seed (`train.train`: its seed + 303).
NONDIGIT_SEED = 1234 + 303


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
    # Each digit alone, as it was drawn (scaled and slanted), as a model input.
    alone: tuple[FloatArray, ...] = ()


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
    alone = [ink_to_model_input(np.asarray(piece, dtype=np.float32) / np.float32(255))
             for piece in pieces]
    return DrawnNumber(text, buffer.getvalue(), tuple(boxes),
                       tuple(model_input for model_input in alone if model_input is not None))


def _ink_left(piece: Image.Image) -> int:
    return int(np.flatnonzero(np.asarray(piece).max(axis=0) > 40)[0])


def _ink_width(piece: Image.Image) -> int:
    columns = np.flatnonzero(np.asarray(piece).max(axis=0) > 40)
    return int(columns[-1] - columns[0] + 1)


def read_picture(
    png: bytes, classifier: Classifier, threshold: float,
    row: NDArray[np.float32] | None = None,
) -> NumberReading | None:
    """Read a number out of picture bytes, as the server will: the whole picture first.

    `row` is the whole picture's probabilities when they are known already (a batch).
    """
    whole, _, kept, _ = to_model_input_and_box(Image.open(io.BytesIO(png)))
    if whole is None:
        return None
    if row is None:
        row = classifier.predict(whole[None])[0]
    ink = ink_map(Image.open(io.BytesIO(png)))
    # The server's cheap look too: a picture that is surely one piece is not split.
    if is_one_digit(row, threshold) or not may_hold_several(kept):
        return whole_reading(row, _ink_box(ink), threshold)
    pieces = picture_pieces(ink)
    if len(pieces) <= 1:
        return whole_reading(row, _ink_box(ink), threshold)
    found = candidates(pieces, ink=ink)
    if not found:
        return None
    inputs = [candidate.model_input for candidate in found]
    probabilities = classifier.predict(np.stack([item for item in inputs if item is not None]))
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


def picture_numbers(
    mnist: Mnist, classifier: Classifier, threshold: float, config: Config
) -> dict[str, Any]:
    """Set (a): numbers of MNIST test digits drawn as canvas pictures, read as the server."""
    generator = np.random.default_rng(config.seed)
    tally = Tally()
    drawn_numbers = []
    started = time.perf_counter()
    for number in range(config.count):
        length = 2 + number % 5
        drawn = draw_number(mnist.test_images, mnist.test_labels, config, generator, length)
        drawn_numbers.append(drawn)
        reading = read_picture(drawn.png, classifier, threshold)
        tally.add(drawn.text, reading, drawn.boxes)
    elapsed = tally.ms_per_number(started)
    alone = [_right_alone(np.stack(drawn.alone), drawn.text, classifier, threshold)
             for drawn in drawn_numbers]
    return {**tally.figures(), "ms_per_number": elapsed, **_alone_figures(alone)}


def ink_numbers(
    mnist: Mnist, classifier: Classifier, threshold: float, config: InkConfig,
) -> tuple[dict[str, Any], list[InkNumber], list[str]]:
    """Set (b): numbers written as ink (skeletons of MNIST test digits), read as the server
    reads its ink; returns the figures, the numbers and their readings (for the socket)."""
    generator = np.random.default_rng(config.seed)
    tally = Tally()
    drawn_numbers = []
    texts = []
    skipped = 0
    started = time.perf_counter()
    for number in range(config.count):
        length = 2 + number % 5
        drawn, passed_over = draw_ink_number(
            mnist.test_images, mnist.test_labels, config, generator, length
        )
        skipped += passed_over
        drawn_numbers.append(drawn)
        reading = read_ink(drawn, classifier, threshold)
        texts.append("" if reading is None else reading.text)
        tally.add(drawn.text, reading, drawn.boxes)
    elapsed = tally.ms_per_number(started)
    alone = [_digits_alone(drawn, classifier, threshold) for drawn in drawn_numbers]
    digits = sum(len(drawn.text) for drawn in drawn_numbers)
    strokes = [len(indices) for drawn in drawn_numbers for indices in drawn.digit_strokes]
    figures = {
        **tally.figures(),
        "ms_per_number": elapsed,
        **_alone_figures(alone),
        # Digits whose skeleton needed more than MAX_STROKES strokes were not used.
        "digits_passed_over": skipped / (skipped + digits),
        "strokes_per_digit": {str(count): strokes.count(count) / len(strokes)
                              for count in sorted(set(strokes))},
    }
    return figures, drawn_numbers, texts


def _digits_alone(drawn: InkNumber, classifier: Classifier, threshold: float) -> list[bool]:
    """Whether each digit of an ink number, drawn alone, reads as itself (and is not rejected)."""
    inputs = []
    for indices in drawn.digit_strokes:
        model_input = strokes_to_model_input([drawn.strokes[index] for index in indices],
                                             drawn.width, drawn.height, drawn.line_width)
        assert model_input is not None
        inputs.append(model_input)
    return _right_alone(np.stack(inputs), drawn.text, classifier, threshold)


def _right_alone(
    inputs: FloatArray, text: str, classifier: Classifier, threshold: float
) -> list[bool]:
    """Whether each digit's input reads as itself, and is not rejected."""
    rows = classifier.predict(inputs)
    return [is_one_digit(row, threshold) and int(np.argmax(row[:10])) == int(label)
            for row, label in zip(rows, text, strict=True)]


def _alone_figures(alone: list[list[bool]]) -> dict[str, float]:
    """The classifier's share of the work: each digit read alone (as the whole drawing is),
    and the numbers whose every digit reads right alone (about the most that any
    segmentation could get right)."""
    return {
        "digits_alone_right": float(np.mean([value for values in alone for value in values])),
        "numbers_with_every_digit_right_alone": float(np.mean([all(values) for values in alone])),
    }


def ink_over_socket(
    url: str, drawn_numbers: list[InkNumber], read_here: list[str], connections: int
) -> dict[str, Any]:
    """Set (b) over a real server: each number streamed as `ink` messages, a few points at a
    time, on `connections` sockets at once; the final answer's `number.text` is the reading.
    `read_here` are the readings of `ink_numbers`, which the server's should equal."""
    started = time.perf_counter()

    async def every() -> list[list[str]]:
        shares = [drawn_numbers[start::connections] for start in range(connections)]
        return await asyncio.gather(*(stream_ink(url, share) for share in shares))

    answered = asyncio.run(every())
    texts: dict[int, str] = {}
    for start, share in enumerate(answered):
        for offset, text in enumerate(share):
            texts[start + offset * connections] = text
    right: dict[int, list[bool]] = {}
    for index, drawn in enumerate(drawn_numbers):
        right.setdefault(len(drawn.text), []).append(texts[index] == drawn.text)
    every_answer = [value for values in right.values() for value in values]
    return {
        "exact": float(np.mean(every_answer)),
        "by_length": {str(length): float(np.mean(values))
                      for length, values in sorted(right.items())},
        "wrong": len(every_answer) - int(np.sum(every_answer)),
        "numbers": len(every_answer),
        "same_as_read_here": float(np.mean([texts[index] == text
                                            for index, text in enumerate(read_here)])),
        "connections": connections,
        "wall_time_s": time.perf_counter() - started,
    }


def single_digits(
    mnist: Mnist, classifier: Classifier, threshold: float, count: int
) -> dict[str, Any]:
    """Set (c): MNIST test digits alone as canvas pictures, read as one-character numbers."""
    pictures = canvas_set(mnist.test_images[:count], seed=CANVAS_SEED)
    labels = mnist.test_labels[:count]
    inputs = [to_model_input(Image.open(io.BytesIO(png))) for png, _ in pictures]
    rows = classifier.predict(np.stack([
        np.zeros((28, 28), np.float32) if model_input is None else model_input
        for model_input in inputs
    ]))
    exact = 0
    rejected = 0
    right_digit = 0
    split = 0
    for (png, _), label, row in zip(pictures, labels, rows, strict=True):
        reading = read_picture(png, classifier, threshold, row)
        whole_digit = None if not is_one_digit(row, threshold) else int(np.argmax(row[:10]))
        rejected += whole_digit is None
        right_digit += whole_digit == int(label)
        split += reading is not None and len(reading.digits) > 1
        exact += reading is not None and reading.text == str(int(label))
    return {
        "one_character_exact": exact / count,
        "digit_accuracy": right_digit / count,
        "false_rejection": rejected / count,
        "read_as_several_characters": split / count,
        "images": count,
    }


def nondigit_pictures(
    mnist: Mnist, classifier: Classifier, threshold: float, per_kind: int
) -> dict[str, Any]:
    """Set (d): `train.nondigits`' held-out non-digits (from MNIST test, training's evaluation
    seed) as canvas pictures, read as the server will: how many are rejected as one digit."""
    count = per_kind * len(EVALUATION_SHARES)
    inputs, kinds = make_nondigits(mnist.test_images, mnist.test_labels, count,
                                   seed=NONDIGIT_SEED, shares=EVALUATION_SHARES)
    generator = np.random.default_rng(NONDIGIT_SEED)
    rejected: dict[str, list[bool]] = {}
    digits_only: dict[str, list[bool]] = {}
    for model_input, kind in zip(inputs, kinds, strict=True):
        png, _ = canvas_picture(np.round(model_input * 255).astype(np.uint8), generator)
        whole = to_model_input(Image.open(io.BytesIO(png)))
        assert whole is not None
        row = classifier.predict(whole[None])[0]
        reading = read_picture(png, classifier, threshold, row)
        rejected.setdefault(str(kind), []).append(not is_one_digit(row, threshold))
        digits_only.setdefault(str(kind), []).append(
            reading is not None and reading.text.isdigit()
        )
    every = [value for values in rejected.values() for value in values]
    return {
        "rejected": float(np.mean(every)),
        "by_kind": {kind: float(np.mean(values)) for kind, values in sorted(rejected.items())},
        # Read as a number with no `?`: right for pairs and triples of digits, wrong for the rest.
        "number_of_digits_only_by_kind": {
            kind: float(np.mean(values)) for kind, values in sorted(digits_only.items())
        },
        "pictures": len(every),
    }


# Seeds the letters and symbols written as ink (set e).
INK_LETTERS_SEED = 2029


def ink_letters(classifier: Classifier, threshold: float, per_shape: int) -> dict[str, Any]:
    """Set (e): `train.nondigits`' letters and symbols, written as ink stroke by stroke on the
    wide canvas (each `per_shape` times: size, slant, pen, a hand's wobble) and read as the
    server reads ink: how many read with a `?`, and which read as digits only. Their shapes
    are training's (drawn there as pictures), so this is no held-out figure: it measures
    what the search makes of strokes that are each a good digit alone (an X's two 1s)."""
    generator = np.random.default_rng(INK_LETTERS_SEED)
    config = InkConfig()
    rejected: dict[str, list[bool]] = {}
    for name, shape in {**LETTERS, **SYMBOLS}.items():
        for _ in range(per_shape):
            strokes, line_width = write_shape(shape, config, generator)
            reading = read_strokes(strokes, (*config.canvas, line_width), classifier, threshold)
            rejected.setdefault(name, []).append(reading is None or "?" in reading.text)
    every = [value for values in rejected.values() for value in values]
    return {
        "rejected": float(np.mean(every)),
        "read_as_digits": {name: round(1.0 - float(np.mean(values)), 3)
                           for name, values in sorted(rejected.items()) if not all(values)},
        "drawings": len(every),
    }


class Tally:
    """Exact readings by length, and each wrong reading's fault."""

    def __init__(self) -> None:
        self.right: dict[int, list[bool]] = {}
        self.faults = {"segmentation": 0, "classification": 0}

    def add(self, text: str, reading: NumberReading | None, boxes: tuple[Box, ...]) -> None:
        """Count one number."""
        correct = reading is not None and reading.text == text
        self.right.setdefault(len(text), []).append(correct)
        if not correct:
            fault = "classification" if segmented_right(reading, boxes) else "segmentation"
            self.faults[fault] += 1

    def figures(self) -> dict[str, Any]:
        """Exact share overall and by length; the wrong ones by fault, as counts and shares."""
        every = [value for values in self.right.values() for value in values]
        wrong = len(every) - int(np.sum(every))
        return {
            "exact": float(np.mean(every)),
            "by_length": {str(length): float(np.mean(values))
                          for length, values in sorted(self.right.items())},
            "wrong": wrong,
            "wrong_by_fault": dict(self.faults),
            "fault_shares": {fault: count / wrong if wrong else 0.0
                             for fault, count in self.faults.items()},
            "numbers": len(every),
        }

    def ms_per_number(self, started: float) -> float:
        """Milliseconds per number since `started`."""
        return 1000 * (time.perf_counter() - started) / max(1, sum(map(len, self.right.values())))


SETS = ("pictures", "ink", "digits", "nondigits", "ink_letters")


def main(argv: list[str] | None = None) -> int:
    """Build the sets, read them, print the figures and write them beside the model."""
    parser = argparse.ArgumentParser(prog="python -m train.numbers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--count", type=int, default=Config.count,
                        help="numbers in each of the picture and ink sets")
    parser.add_argument("--digits", type=int, default=10000, help="single MNIST test digits")
    parser.add_argument("--nondigits-per-kind", type=int, default=200)
    parser.add_argument("--letters-per-shape", type=int, default=10,
                        help="times each letter and symbol is written as ink")
    parser.add_argument("--sets", default=",".join(SETS),
                        help=f"which sets to measure, comma-separated (default {','.join(SETS)})")
    socket = parser.add_mutually_exclusive_group()
    socket.add_argument("--url", help="also stream the ink set to this running server")
    socket.add_argument("--serve", action="store_true",
                        help="also stream the ink set to a server started here on a free port")
    parser.add_argument("--connections", type=int, default=4,
                        help="sockets the ink set is streamed on at once")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the figures (default: numbers-metrics.json "
                        "beside the model; - for nowhere)")
    parser.add_argument("--data", type=Path, default=None)
    arguments = parser.parse_args(argv)
    chosen = [name for name in arguments.sets.split(",") if name]
    unknown = sorted(set(chosen) - set(SETS))
    if unknown:
        parser.error(f"unknown sets: {', '.join(unknown)} (choose from {', '.join(SETS)})")
    metrics = json.loads(arguments.model.with_name(METRICS_PATH.name).read_text())
    threshold = float(metrics.get("not_digit_threshold", 1.0))
    classifier = Classifier(arguments.model)
    mnist = load_mnist(arguments.data)
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "model": {"path": str(arguments.model), "version": metrics.get("version")},
        "not_digit_threshold": threshold,
        "command": "python -m train.numbers " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if "pictures" in chosen:
        config = Config(count=arguments.count)
        figures["pictures"] = picture_numbers(mnist, classifier, threshold, config)
        _show("(a) numbers as pictures", figures["pictures"])
    if "ink" in chosen:
        ink_config = InkConfig(count=arguments.count)
        figures["ink"], drawn_numbers, texts = ink_numbers(
            mnist, classifier, threshold, ink_config
        )
        _show("(b) numbers as ink, read here", figures["ink"])
        if arguments.url or arguments.serve:
            figures["ink"]["socket"] = _over_socket(arguments, drawn_numbers, texts)
            _show("(b) numbers as ink, over the socket", figures["ink"]["socket"])
    if "digits" in chosen:
        figures["digits"] = single_digits(mnist, classifier, threshold, arguments.digits)
        _show("(c) MNIST test digits alone, as pictures", figures["digits"])
    if "nondigits" in chosen:
        figures["nondigits"] = nondigit_pictures(
            mnist, classifier, threshold, arguments.nondigits_per_kind
        )
        _show("(d) non-digits, as pictures", figures["nondigits"])
    if "ink_letters" in chosen:
        figures["ink_letters"] = ink_letters(classifier, threshold, arguments.letters_per_shape)
        _show("(e) letters and symbols, as ink", figures["ink_letters"])
    figures["wall_time_s"] = time.perf_counter() - started
    out = arguments.out or arguments.model.with_name(NUMBERS_METRICS)
    if str(out) != "-":
        out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


def _over_socket(
    arguments: argparse.Namespace, drawn_numbers: list[InkNumber], read_here: list[str]
) -> dict[str, Any]:
    """Stream the ink set to the server at `--url`, or to one started here (`--serve`)."""
    if arguments.url:
        return ink_over_socket(arguments.url, drawn_numbers, read_here, arguments.connections)
    from bench.server_process import start_server

    with tempfile.TemporaryDirectory() as folder:
        server = start_server(Path(folder), "--model", str(arguments.model))
        try:
            return ink_over_socket(server.ws_url, drawn_numbers, read_here,
                                   arguments.connections)
        finally:
            server.stop()


def _show(title: str, figures: dict[str, Any]) -> None:
    print(f"{title}:\n{json.dumps(figures, indent=2)}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
