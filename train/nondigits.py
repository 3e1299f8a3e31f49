"""Synthetic pictures that are not digits, as 28x28 model inputs, for the "not a digit" output.

Owns every kind of non-digit the model learns to reject (`KINDS`) and how each is made:
- `fragment`: part of an MNIST digit (a half cut at any angle, a band or a box erased, one
  piece left of a cut), keeping only cuts that remove at least `MIN_REMOVED_INK` of the ink
  and dropping pieces that still look like a digit: tall thin ones (a piece of a 1 is a 1),
  straight strokes near the vertical, and closed loops with little else (a 0);
- `pair` and `triple`: two or three digits squeezed into one box, side by side with a gap,
  touching or overlapping a little, of different sizes; a pair's second digit is sometimes
  itself a fragment (what segmentation gets when it merges a digit with part of the next);
- `letter` and `symbol`: pen strokes from the hand-written templates below, with random
  affine jitter, slant, size, pen width and tremor;
- `scribble`, `zigzag`, `spiral`, `hatching`, `shape` (triangle, square, star, heart,
  crosses, arrow), `blob`, `dots` and `noise`: procedural.

Pen strokes become inputs through `model.strokes.strokes_to_model_input`, exactly as the
server draws the page's ink; bitmaps (fragments, groups, blobs, noise) through
`model.preprocess.ink_to_model_input` (crop, thicken, scale into the box, centre by mass),
as the server does for pictures.

Letters that are legitimately digit-like have no template and are never rendered:
`EXCLUDED` lists them (O o Q D as 0; I l i j | / ! ( ) as 1; Z z ? as 2; S s $ as 5;
b G as 6; B as 8; g q a as 9; y as 4).

Training and evaluation use the same generator with different MNIST digits (training split
versus MNIST test) and different seeds. `font_nondigits` renders the allowed letters and
symbols with the system's fonts for held-out evaluation ONLY; nothing else in this module
opens a font file.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from scipy import ndimage

from model.preprocess import ink_to_model_input, to_model_input
from model.strokes import strokes_to_model_input

FloatArray = NDArray[np.float32]
Unit = list[list[tuple[float, float]]]  # Pen strokes in a unit box, x right and y down.

KINDS = (
    "fragment",
    "pair",
    "triple",
    "letter",
    "symbol",
    "scribble",
    "zigzag",
    "spiral",
    "hatching",
    "shape",
    "blob",
    "dots",
    "noise",
)
# Fragments and pairs come first: segmentation scores candidate pieces with this output.
TRAINING_SHARES = {
    "fragment": 0.30,
    "pair": 0.16,
    "triple": 0.06,
    "letter": 0.16,
    "symbol": 0.07,
    "scribble": 0.05,
    "zigzag": 0.03,
    "spiral": 0.03,
    "hatching": 0.03,
    "shape": 0.05,
    "blob": 0.02,
    "dots": 0.02,
    "noise": 0.02,
}
# The evaluation set holds as many of each kind, so each kind's rejection rate is measured.
EVALUATION_SHARES = {kind: 1.0 / len(KINDS) for kind in KINDS}

# A cut must remove at least this share of a digit's ink: less leaves a digit that is merely
# worn (measured: at 0.3 many halves of 3, 7 and 9 still read as those digits).
MIN_REMOVED_INK = 0.4
# ... and leave at least this share, so a fragment is a piece and not a speck.
MIN_KEPT_INK = 0.12
# A piece taller than this many times its width reads as a 1.
MAX_TALL_ASPECT = 2.0
# A piece whose ink spreads this little across its main axis is a straight stroke; near the
# vertical (within `ONE_LIKE_DEGREES`) that is a 1.
STRAIGHT_SPREAD = 0.3
ONE_LIKE_DEGREES = 50.0
# A piece whose hole is this share of its box, with less than `LOOP_OUTSIDE_INK` of its ink
# away from the loop, is a 0.
LOOP_HOLE_SHARE = 0.04
LOOP_OUTSIDE_INK = 0.3
# The fragment beside a digit in a pair keeps at least this share of its digit's ink.
PAIR_PIECE_MIN_KEPT = 0.35
# Share of letters, symbols and shapes drawn upright and even like print (some with serifs):
# measured, hand-drawn ones alone left printed letters (e, J, d, C) read as digits.
PRINTED_SHARE = 0.4

CANVAS_SIZE = 280  # The page's square canvas, in pixels; strokes are drawn on it.
UPSCALE = 2  # MNIST digits are cut and placed at twice their size.
FONT_FOLDERS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
FONT_SUFFIXES = (".ttf", ".otf")
EXCLUDED = "OoQDIlij|/!()Zz?Ss$bGBgqay"


def _arc(
    centre: tuple[float, float], radii: tuple[float, float], start: float, end: float
) -> list[tuple[float, float]]:
    """Points on an elliptic arc; degrees clockwise from the top (0 up, 90 right)."""
    steps = max(4, round(abs(end - start) / 12))
    (x, y), (across, down) = centre, radii
    angles = [math.radians(start + (end - start) * step / steps) for step in range(steps + 1)]
    return [(x + across * math.sin(angle), y - down * math.cos(angle)) for angle in angles]


# Letters as a person draws them, one list of strokes each, in a unit box (x right, y down).
LETTERS: dict[str, Unit] = {
    "A": [[(0.1, 0.95), (0.5, 0.05), (0.9, 0.95)], [(0.27, 0.6), (0.73, 0.6)]],
    "C": [_arc((0.55, 0.5), (0.42, 0.45), 55, 300)],
    "E": [[(0.8, 0.05), (0.2, 0.05), (0.2, 0.95), (0.8, 0.95)], [(0.2, 0.5), (0.65, 0.5)]],
    "F": [[(0.8, 0.05), (0.2, 0.05), (0.2, 0.95)], [(0.2, 0.5), (0.65, 0.5)]],
    "H": [[(0.15, 0.05), (0.15, 0.95)], [(0.85, 0.05), (0.85, 0.95)], [(0.15, 0.5), (0.85, 0.5)]],
    "J": [[(0.3, 0.05), (0.85, 0.05)], [(0.6, 0.05), *_arc((0.4, 0.72), (0.2, 0.23), 90, 270)]],
    "K": [[(0.2, 0.05), (0.2, 0.95)], [(0.85, 0.05), (0.2, 0.55)], [(0.38, 0.42), (0.85, 0.95)]],
    "L": [[(0.2, 0.05), (0.2, 0.95), (0.85, 0.95)]],
    "M": [[(0.1, 0.95), (0.15, 0.05), (0.5, 0.65), (0.85, 0.05), (0.9, 0.95)]],
    "N": [[(0.15, 0.95), (0.15, 0.05), (0.85, 0.95), (0.85, 0.05)]],
    "P": [[(0.2, 0.95), (0.2, 0.05)], [(0.2, 0.05), *_arc((0.45, 0.28), (0.35, 0.23), -80, 180)]],
    "R": [
        [(0.2, 0.95), (0.2, 0.05)],
        [(0.2, 0.05), *_arc((0.45, 0.28), (0.35, 0.23), -80, 180)],
        [(0.42, 0.5), (0.85, 0.95)],
    ],
    "T": [[(0.05, 0.05), (0.95, 0.05)], [(0.5, 0.05), (0.5, 0.95)]],
    "U": [[(0.15, 0.05), *_arc((0.5, 0.6), (0.35, 0.35), -90, 90), (0.85, 0.05)]],
    "V": [[(0.1, 0.05), (0.5, 0.95), (0.9, 0.05)]],
    "W": [[(0.05, 0.05), (0.27, 0.95), (0.5, 0.35), (0.73, 0.95), (0.95, 0.05)]],
    "X": [[(0.12, 0.05), (0.88, 0.95)], [(0.88, 0.05), (0.12, 0.95)]],
    "Y": [[(0.1, 0.05), (0.5, 0.5), (0.9, 0.05)], [(0.5, 0.5), (0.5, 0.95)]],
    "c": [_arc((0.55, 0.65), (0.38, 0.3), 55, 300)],
    "d": [_arc((0.45, 0.7), (0.32, 0.27), 30, 390), [(0.8, 0.05), (0.8, 0.97)]],
    "e": [[(0.15, 0.65), (0.85, 0.65), *_arc((0.5, 0.67), (0.36, 0.3), 80, 330)]],
    "f": [
        [*_arc((0.65, 0.25), (0.22, 0.2), 70, -90), (0.43, 0.95)],
        [(0.15, 0.45), (0.75, 0.45)],
    ],
    "h": [
        [(0.2, 0.02), (0.2, 0.97)],
        [(0.2, 0.6), *_arc((0.5, 0.6), (0.3, 0.2), -70, 90)[1:], (0.8, 0.97)],
    ],
    "k": [[(0.25, 0.02), (0.25, 0.97)], [(0.75, 0.4), (0.25, 0.7), (0.8, 0.97)]],
    "m": [
        [(0.08, 0.4), (0.08, 0.97)],
        [(0.08, 0.55), *_arc((0.29, 0.55), (0.21, 0.15), -80, 90)[1:], (0.5, 0.97)],
        [(0.5, 0.55), *_arc((0.71, 0.55), (0.21, 0.15), -80, 90)[1:], (0.92, 0.97)],
    ],
    "n": [
        [(0.2, 0.4), (0.2, 0.97)],
        [(0.2, 0.6), *_arc((0.5, 0.6), (0.3, 0.2), -70, 90)[1:], (0.8, 0.97)],
    ],
    "p": [[(0.2, 0.35), (0.2, 1.0)], [(0.2, 0.45), *_arc((0.45, 0.52), (0.3, 0.17), -70, 250)]],
    "r": [[(0.25, 0.4), (0.25, 0.97)], [(0.25, 0.65), *_arc((0.55, 0.6), (0.3, 0.2), -70, 45)[1:]]],
    "t": [[(0.45, 0.05), (0.45, 0.85), (0.6, 0.97), (0.8, 0.9)], [(0.15, 0.35), (0.8, 0.35)]],
    "u": [[(0.15, 0.4), *_arc((0.47, 0.7), (0.32, 0.27), -90, 90)[1:]], [(0.8, 0.4), (0.8, 0.97)]],
    "v": [[(0.12, 0.4), (0.5, 0.97), (0.88, 0.4)]],
    "w": [[(0.05, 0.4), (0.27, 0.97), (0.5, 0.55), (0.73, 0.97), (0.95, 0.4)]],
    "x": [[(0.15, 0.4), (0.85, 0.97)], [(0.85, 0.4), (0.15, 0.97)]],
}
SYMBOLS: dict[str, Unit] = {
    "+": [[(0.5, 0.15), (0.5, 0.85)], [(0.15, 0.5), (0.85, 0.5)]],
    "=": [[(0.1, 0.35), (0.9, 0.35)], [(0.1, 0.65), (0.9, 0.65)]],
    "-": [[(0.1, 0.5), (0.9, 0.5)]],
    "#": [
        [(0.35, 0.05), (0.28, 0.95)],
        [(0.72, 0.05), (0.65, 0.95)],
        [(0.1, 0.33), (0.9, 0.33)],
        [(0.08, 0.67), (0.88, 0.67)],
    ],
    "%": [
        _arc((0.25, 0.22), (0.14, 0.16), 0, 360),
        [(0.85, 0.05), (0.15, 0.95)],
        _arc((0.75, 0.78), (0.14, 0.16), 0, 360),
    ],
    "&": [
        [
            (0.9, 0.95),
            (0.3, 0.4),
            *_arc((0.45, 0.22), (0.18, 0.17), 220, -90),
            (0.2, 0.65),
            *_arc((0.4, 0.75), (0.22, 0.2), -90, 150),
            (0.85, 0.5),
        ]
    ],
    "@": [
        [
            *_arc((0.5, 0.5), (0.16, 0.17), 60, 400),
            (0.68, 0.65),
            (0.85, 0.6),
            *_arc((0.5, 0.5), (0.42, 0.45), 80, -200),
        ]
    ],
    "*": [
        [(0.5, 0.1), (0.5, 0.9)],
        [(0.15, 0.3), (0.85, 0.7)],
        [(0.85, 0.3), (0.15, 0.7)],
    ],
    "<": [[(0.85, 0.1), (0.15, 0.5), (0.85, 0.9)]],
    ">": [[(0.15, 0.1), (0.85, 0.5), (0.15, 0.9)]],
    "~": [
        [*_arc((0.3, 0.55), (0.2, 0.12), -90, 90)[::-1], *_arc((0.7, 0.45), (0.2, 0.12), 270, 90)]
    ],
    "^": [[(0.1, 0.7), (0.5, 0.1), (0.9, 0.7)]],
    ":": [[(0.5, 0.25)], [(0.5, 0.75)]],
    "÷": [[(0.1, 0.5), (0.9, 0.5)], [(0.5, 0.2)], [(0.5, 0.8)]],
    "\u00d7": [[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)]],
    ":)": [[(0.2, 0.3)], [(0.2, 0.7)], _arc((0.4, 0.5), (0.45, 0.45), 30, 150)],
    "smiley": [
        _arc((0.5, 0.5), (0.45, 0.45), 0, 360),
        [(0.35, 0.38)],
        [(0.65, 0.38)],
        _arc((0.5, 0.5), (0.27, 0.25), 110, 250),
    ],
}
SHAPES: dict[str, Unit] = {
    "triangle": [[(0.5, 0.05), (0.95, 0.9), (0.05, 0.9), (0.5, 0.05)]],
    "square": [[(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9), (0.1, 0.1)]],
    "star": [
        [
            (
                0.5 + 0.45 * math.sin(math.radians(144 * step)),
                0.55 - 0.45 * math.cos(math.radians(144 * step)),
            )
            for step in range(6)
        ]
    ],
    "heart": [
        [
            (0.5, 0.95),
            (0.12, 0.45),
            *_arc((0.3, 0.3), (0.19, 0.2), -100, 90),
            *_arc((0.7, 0.3), (0.19, 0.2), -90, 100),
            (0.88, 0.45),
            (0.5, 0.95),
        ]
    ],
    "cross": [[(0.5, 0.05), (0.5, 0.95)], [(0.05, 0.5), (0.95, 0.5)]],
    "x_cross": [[(0.1, 0.1), (0.9, 0.9)], [(0.9, 0.1), (0.1, 0.9)]],
    "arrow": [[(0.05, 0.5), (0.95, 0.5)], [(0.65, 0.2), (0.95, 0.5), (0.65, 0.8)]],
    "diamond": [[(0.5, 0.05), (0.9, 0.5), (0.5, 0.95), (0.1, 0.5), (0.5, 0.05)]],
}
# What the font-rendered evaluation set draws: every letter and symbol not in EXCLUDED.
FONT_CHARACTERS = "".join(
    character
    for character in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+=-#%&@*<>~^:÷\u00d7"
    if character not in EXCLUDED
)


# ---- the generator ----------------------------------------------------------------------


def make_nondigits(
    digits: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    count: int,
    seed: int,
    shares: dict[str, float] | None = None,
    processes: int = 1,
) -> tuple[FloatArray, NDArray[np.str_]]:
    """`count` non-digits (N, 28, 28) in [0, 1] and their kinds, the same for the same seed.

    Fragments and groups are cut from `digits` (MNIST, uint8 28x28) with their `labels`;
    the other kinds need no digits. Each picture has its own seed, so any number of
    processes gives the same result.
    """
    chosen = _kinds_for(count, seed, TRAINING_SHARES if shares is None else shares)
    if processes <= 1 or count < 200:
        return _make_range(digits, labels, chosen, seed, 0), np.asarray(chosen)
    chunk = -(-count // (processes * 4))
    starts = list(range(0, count, chunk))
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        parts = list(
            pool.map(
                _make_range,
                [digits] * len(starts),
                [labels] * len(starts),
                [chosen[start : start + chunk] for start in starts],
                [seed] * len(starts),
                starts,
            )
        )
    return np.concatenate(parts), np.asarray(chosen)


def _kinds_for(count: int, seed: int, shares: dict[str, float]) -> list[str]:
    """Each picture's kind: the shares' counts, rounded, in a seeded random order."""
    names = [kind for kind in KINDS if shares.get(kind, 0.0) > 0.0]
    weights = np.array([shares[kind] for kind in names], dtype=np.float64)
    counts = np.floor(weights / weights.sum() * count).astype(int)
    counts[: count - int(counts.sum())] += 1
    chosen = np.repeat(np.array(names), counts)
    return [str(kind) for kind in np.random.default_rng([seed, 1]).permutation(chosen)]


def _make_range(
    digits: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    kinds: Sequence[str],
    seed: int,
    first: int,
) -> FloatArray:
    """Make the pictures `first`, `first + 1`, ... of the given kinds."""
    result = np.zeros((len(kinds), 28, 28), dtype=np.float32)
    for offset, kind in enumerate(kinds):
        generator = np.random.default_rng([seed, 2, first + offset])
        result[offset] = make_one(kind, generator, digits, labels)
    return result


def make_one(
    kind: str, generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray:
    """One non-digit of a kind; makers that draw a digit-like piece are simply asked again."""
    maker = MAKERS[kind]
    for _ in range(200):
        picture = maker(generator, digits, labels)
        if picture is not None and float(picture.max()) > 0.0:
            return picture
    raise RuntimeError(f"no {kind} came out in 200 tries")


# ---- bitmaps cut from MNIST digits --------------------------------------------------------


def _digit_ink(
    generator: np.random.Generator,
    digits: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    allow_one: bool = True,
) -> FloatArray:
    """A random MNIST digit at twice its size, cropped to its ink, in [0, 1]."""
    while True:
        index = int(generator.integers(len(digits)))
        if allow_one or labels[index] != 1:
            break
    ink = ndimage.zoom(digits[index].astype(np.float32) / 255.0, UPSCALE, order=1)
    return _cropped(np.clip(ink, 0.0, 1.0))


def _cropped(ink: FloatArray, floor: float = 0.1) -> FloatArray:
    """The smallest part of an ink map holding all ink above `floor`."""
    rows = np.flatnonzero((ink > floor).any(axis=1))
    columns = np.flatnonzero((ink > floor).any(axis=0))
    if len(rows) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1], dtype=np.float32)


def cut_fragment(
    ink: FloatArray, generator: np.random.Generator, min_kept: float = MIN_KEPT_INK
) -> FloatArray | None:
    """Cut part of a digit away; None when too little was removed or the rest is digit-like.

    The piece keeps between `min_kept` and `1 - MIN_REMOVED_INK` of the digit's ink.
    """
    height, width = ink.shape
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    cut = int(generator.integers(4))
    if cut == 0:
        # A half: everything on one side of a line at any angle through the digit.
        angle = generator.uniform(0.0, 2.0 * math.pi)
        across = (columns - width / 2) * math.cos(angle) + (rows - height / 2) * math.sin(angle)
        reach = float(np.abs(across).max())
        keep = across > generator.uniform(-0.3, 0.4) * reach
    elif cut == 1:
        # A band erased across the digit (the stem of a 4, the middle of an 8).
        angle = generator.uniform(0.0, math.pi)
        across = (columns - width / 2) * math.cos(angle) + (rows - height / 2) * math.sin(angle)
        middle = generator.uniform(-0.35, 0.35) * float(np.abs(across).max())
        keep = np.abs(across - middle) > generator.uniform(0.12, 0.3) * max(height, width)
    elif cut == 2:
        # A box erased from the digit.
        box_height = generator.uniform(0.35, 0.7) * height
        box_width = generator.uniform(0.35, 0.8) * width
        top = generator.uniform(-0.2 * box_height, height - 0.8 * box_height)
        left = generator.uniform(-0.2 * box_width, width - 0.8 * box_width)
        keep = ~(
            (rows >= top)
            & (rows < top + box_height)
            & (columns >= left)
            & (columns < left + box_width)
        )
    else:
        # One piece of what a band leaves: segmentation's pieces are often connected parts.
        angle = generator.uniform(0.0, math.pi)
        across = (columns - width / 2) * math.cos(angle) + (rows - height / 2) * math.sin(angle)
        keep = np.abs(across) > generator.uniform(0.05, 0.15) * max(height, width)
        pieces, count = ndimage.label((ink > 0.3) & keep)
        if count == 0:
            return None
        keep = pieces == int(generator.integers(1, count + 1))
        keep = ndimage.binary_dilation(keep, iterations=1) & (ink > 0.0)
    kept = np.asarray(ink * keep, dtype=np.float32)
    total = float(ink.sum())
    share = float(kept.sum()) / max(total, 1e-6)
    if not min_kept <= share <= 1.0 - MIN_REMOVED_INK:
        return None
    kept = _cropped(kept)
    if kept.size == 0 or looks_like_a_digit(kept):
        return None
    return kept


def looks_like_a_digit(ink: FloatArray) -> bool:
    """Whether a piece still reads as a digit: tall and thin or a straight near-vertical
    stroke (a 1), or a closed loop with little else (a 0)."""
    mask = ink > 0.3
    height, width = ink.shape
    if height > MAX_TALL_ASPECT * width:
        return True
    rows, columns = np.nonzero(mask)
    if len(rows) < 3:
        return False
    spread = np.cov(np.stack([columns, rows]).astype(np.float64))
    values, vectors = np.linalg.eigh(spread)
    if values[1] > 0 and values[0] / values[1] < STRAIGHT_SPREAD**2:
        main = vectors[:, 1]
        from_vertical = math.degrees(math.atan2(abs(float(main[0])), abs(float(main[1]))))
        if from_vertical < ONE_LIKE_DEGREES:
            return True
    holes = ndimage.binary_fill_holes(mask) & ~mask
    if holes.sum() > LOOP_HOLE_SHARE * height * width:
        hole_rows, hole_columns = np.nonzero(holes)
        top, bottom = hole_rows.min(), hole_rows.max()
        left, right = hole_columns.min(), hole_columns.max()
        margin_rows = max(2, round(0.6 * (bottom - top + 1)))
        margin_columns = max(2, round(0.6 * (right - left + 1)))
        near = np.zeros_like(mask)
        near[
            max(0, top - margin_rows) : bottom + margin_rows + 1,
            max(0, left - margin_columns) : right + margin_columns + 1,
        ] = True
        outside = float(ink[~near].sum()) / max(float(ink.sum()), 1e-6)
        if outside < LOOP_OUTSIDE_INK:
            return True
    return False


def _fragment(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """Part of an MNIST digit (never of a 1: any piece of a 1 is a 1)."""
    piece = cut_fragment(_digit_ink(generator, digits, labels, allow_one=False), generator)
    return None if piece is None else ink_to_model_input(piece)


def _group(
    generator: np.random.Generator,
    digits: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    count: int,
) -> FloatArray | None:
    """`count` digits side by side in one box: gaps, touching, a little overlap, sizes."""
    pieces = []
    for index in range(count):
        ink = _digit_ink(generator, digits, labels)
        if count == 2 and index == 1 and generator.random() < 0.3:
            # A digit and part of its neighbour, as an over-eager merge sees them.
            # A speck beside a digit is still that digit: the piece keeps a good share.
            piece = cut_fragment(ink, generator, min_kept=PAIR_PIECE_MIN_KEPT)
            ink = ink if piece is None else piece
        scale = generator.uniform(0.7, 1.15)
        ink = np.clip(ndimage.zoom(ink, scale, order=1), 0.0, 1.0)
        pieces.append(_cropped(ink))
    pieces = [piece for piece in pieces if piece.size]
    if len(pieces) < 2:
        return None
    tallest = max(piece.shape[0] for piece in pieces)
    lefts, tops, left = [], [], 0
    for index, piece in enumerate(pieces):
        if index:
            narrower = min(piece.shape[1], pieces[index - 1].shape[1])
            gap = generator.uniform(-0.25, 0.45) * narrower
            left = max(0, left + round(gap))
        lefts.append(left)
        tops.append(
            int(
                np.clip(
                    round((tallest - piece.shape[0]) / 2 + generator.normal(0, 0.1) * tallest),
                    0,
                    tallest,
                )
            )
        )
        left += piece.shape[1]
    field = np.zeros(
        (tallest * 2 + 1, max(lefts[i] + pieces[i].shape[1] for i in range(len(pieces)))),
        dtype=np.float32,
    )
    for piece, top, left in zip(pieces, tops, lefts, strict=True):
        window = field[top : top + piece.shape[0], left : left + piece.shape[1]]
        np.maximum(window, piece, out=window)
    return ink_to_model_input(field)


def _pair(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """Two digits in one box."""
    return _group(generator, digits, labels, 2)


def _triple(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """Three digits in one box."""
    return _group(generator, digits, labels, 3)


# ---- pen strokes ------------------------------------------------------------------------


def draw_unit_strokes(
    strokes: Sequence[Sequence[tuple[float, float]]],
    generator: np.random.Generator,
    tremor: float = 0.012,
    printed: bool = False,
) -> FloatArray | None:
    """Draw unit-box strokes as a hand would on the page's canvas, through the ink path.

    Random slant, rotation, aspect, size, place and pen width; corners wobble and every
    point shakes a little (smoothly, like a hand, not like noise). `printed` draws them
    upright, steady and sometimes bold, half the time with serifs at the stroke ends.
    """
    slant = generator.uniform(-0.35, 0.3)
    turn = math.radians(generator.uniform(-14.0, 14.0))
    aspect = math.exp(generator.uniform(-0.3, 0.3))
    size = generator.uniform(0.3, 0.85) * CANVAS_SIZE
    left = generator.uniform(0.05, 0.95) * (CANVAS_SIZE - size) + size / 2
    top = generator.uniform(0.05, 0.95) * (CANVAS_SIZE - size) + size / 2
    line_width = generator.uniform(0.035, 0.11) * size
    wobble = 0.02
    if printed:
        slant = generator.uniform(-0.25, 0.0) if generator.random() < 0.3 else 0.0
        turn, tremor, wobble = 0.0, 0.0, 0.005
        line_width = generator.uniform(0.05, 0.17) * size
        if generator.random() < 0.5:
            strokes = [*strokes, *_serifs(strokes, generator.uniform(0.08, 0.16))]
    cosine, sine = math.cos(turn), math.sin(turn)
    drawn = []
    for stroke in strokes:
        points = np.asarray(stroke, dtype=np.float64)
        points = points + generator.normal(0.0, wobble, size=points.shape)
        points = _densified(points, 0.03)
        if len(points) > 3:
            shake = generator.normal(0.0, tremor, size=points.shape)
            points = points + ndimage.gaussian_filter1d(shake, 2.0, axis=0) * 2.0
        x = (points[:, 0] - 0.5) * aspect - slant * (points[:, 1] - 0.5)
        y = points[:, 1] - 0.5
        x, y = x * cosine - y * sine, x * sine + y * cosine
        drawn.append(list(zip((left + size * x).tolist(), (top + size * y).tolist(), strict=True)))
    return strokes_to_model_input(drawn, CANVAS_SIZE, CANVAS_SIZE, line_width)


def _serifs(
    strokes: Sequence[Sequence[tuple[float, float]]], length: float
) -> list[list[tuple[float, float]]]:
    """Short bars across the free ends of straight strokes, as a serif typeface has."""
    serifs = []
    for stroke in strokes:
        if len(stroke) < 2 or len(stroke) > 4:
            continue
        for end, neighbour in ((stroke[0], stroke[1]), (stroke[-1], stroke[-2])):
            along = np.subtract(end, neighbour)
            norm = float(np.hypot(*along))
            if norm == 0.0:
                continue
            across = np.array([-along[1], along[0]]) / norm * length / 2
            serifs.append(
                [tuple(np.add(end, across).tolist()), tuple(np.subtract(end, across).tolist())]
            )
    return serifs


def _densified(points: NDArray[np.float64], spacing: float) -> NDArray[np.float64]:
    """A polyline with points at most `spacing` apart, its corners kept."""
    if len(points) < 2:
        return points
    result = [points[:1]]
    for first, second in itertools.pairwise(points):
        steps = max(1, math.ceil(float(np.hypot(*(second - first))) / spacing))
        fractions = np.arange(1, steps + 1)[:, None] / steps
        result.append(first + (second - first) * fractions)
    return np.concatenate(result)


def _letter(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """A letter from the templates."""
    names = sorted(LETTERS)
    strokes = LETTERS[names[int(generator.integers(len(names)))]]
    return draw_unit_strokes(strokes, generator, printed=generator.random() < PRINTED_SHARE)


def _symbol(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """A symbol from the templates (smileys too)."""
    names = sorted(SYMBOLS)
    strokes = SYMBOLS[names[int(generator.integers(len(names)))]]
    return draw_unit_strokes(strokes, generator, printed=generator.random() < PRINTED_SHARE)


def _shape(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """A triangle, square, star, heart, cross, arrow or diamond."""
    names = sorted(SHAPES)
    strokes = SHAPES[names[int(generator.integers(len(names)))]]
    return draw_unit_strokes(strokes, generator, printed=generator.random() < PRINTED_SHARE)


def _scribble(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """A tangled random walk of one or two strokes, turning sharply and often."""
    strokes: Unit = []
    for _ in range(int(generator.integers(1, 3))):
        steps = int(generator.integers(20, 44))
        heading = np.cumsum(generator.normal(0.0, 1.1, steps))
        lengths = generator.uniform(0.05, 0.2, steps)
        points = np.cumsum(
            np.stack([np.cos(heading), np.sin(heading)], axis=1) * lengths[:, None], axis=0
        )
        points = (points - points.min(axis=0)) / max(float(np.ptp(points, axis=0).max()), 1e-6)
        strokes.append([(float(x), float(y)) for x, y in points])
    return draw_unit_strokes(strokes, generator, tremor=0.004)


def _zigzag(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """Four to nine teeth of a zig-zag, along any direction."""
    teeth = int(generator.integers(5, 10))
    depth = generator.uniform(0.2, 1.0)
    points = [
        (step / teeth, 0.5 + depth * (0.5 if step % 2 else -0.5)) for step in range(teeth + 1)
    ]
    return _turned(points, generator)


def _turned(points: list[tuple[float, float]], generator: np.random.Generator) -> FloatArray | None:
    """Draw one stroke turned by any angle about the unit box's centre."""
    angle = generator.uniform(0.0, 2.0 * math.pi)
    cosine, sine = math.cos(angle), math.sin(angle)
    turned = [
        (0.5 + (x - 0.5) * cosine - (y - 0.5) * sine, 0.5 + (x - 0.5) * sine + (y - 0.5) * cosine)
        for x, y in points
    ]
    return draw_unit_strokes([turned], generator, tremor=0.006)


def _spiral(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """An Archimedean spiral of 1.75 to 3.5 turns, either way round."""
    turns = generator.uniform(1.75, 3.5)
    angles = np.linspace(0.0, turns * 2.0 * math.pi, int(turns * 24))
    radii = 0.05 + 0.45 * angles / angles[-1]
    direction = 1.0 if generator.random() < 0.5 else -1.0
    points = [
        (0.5 + radius * math.cos(angle), 0.5 + direction * radius * math.sin(angle))
        for radius, angle in zip(radii.tolist(), angles.tolist(), strict=True)
    ]
    return _turned(points, generator)


def _hatching(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """Three to seven parallel lines at any angle, sometimes crossed by more."""
    strokes: Unit = []
    for _ in range(1 if generator.random() < 0.6 else 2):
        angle = generator.uniform(0.0, math.pi)
        lines = int(generator.integers(3, 8))
        cosine, sine = math.cos(angle), math.sin(angle)
        for line in range(lines):
            offset = (line / (lines - 1) - 0.5) * 0.9
            half = generator.uniform(0.3, 0.5)
            centre = (0.5 - offset * sine, 0.5 + offset * cosine)
            strokes.append(
                [
                    (centre[0] - half * cosine, centre[1] - half * sine),
                    (centre[0] + half * cosine, centre[1] + half * sine),
                ]
            )
    return draw_unit_strokes(strokes, generator, tremor=0.006)


def _dots(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """One to seven dots of the pen, anywhere."""
    count = int(generator.integers(1, 8))
    strokes: Unit = [[(float(x), float(y))] for x, y in generator.uniform(0.0, 1.0, (count, 2))]
    return draw_unit_strokes(strokes, generator)


def _blob(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """A filled irregular shape, a smudge rather than a line."""
    size = 112
    angles = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    radius = np.ones_like(angles)
    for harmonic in range(2, 6):
        radius += generator.normal(0.0, 0.25 / harmonic) * np.cos(
            harmonic * angles + generator.uniform(0.0, 2.0 * math.pi)
        )
    radius = np.clip(radius, 0.3, None) * 0.4 * size
    stretch = math.exp(generator.uniform(-0.6, 0.6))
    points = [
        (size / 2 + r * math.cos(a) * stretch, size / 2 + r * math.sin(a) / stretch)
        for r, a in zip(radius.tolist(), angles.tolist(), strict=True)
    ]
    picture = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(picture).polygon([(x + size / 2, y + size / 2) for x, y in points], fill=255)
    ink = np.asarray(picture, dtype=np.float32) / 255.0
    if looks_like_a_digit(_cropped(ink)):
        # A long thin smudge is a thick 1.
        return None
    return ink_to_model_input(ndimage.gaussian_filter(ink, generator.uniform(0.5, 3.0)))


def _noise(
    generator: np.random.Generator, digits: NDArray[np.uint8], labels: NDArray[np.uint8]
) -> FloatArray | None:
    """Specks and clumps of noise, as a dirty or badly thresholded picture gives."""
    size = 64
    density = generator.uniform(0.01, 0.12)
    specks = (generator.random((size, size)) < density).astype(np.float32)
    ink = ndimage.gaussian_filter(specks, generator.uniform(0.5, 2.0))
    ink = ink / max(float(ink.max()), 1e-6)
    ink = np.where(ink > generator.uniform(0.15, 0.5), ink, 0.0).astype(np.float32)
    return ink_to_model_input(ink)


Maker = Callable[[np.random.Generator, NDArray[np.uint8], NDArray[np.uint8]], FloatArray | None]
MAKERS: dict[str, Maker] = {
    "fragment": _fragment,
    "pair": _pair,
    "triple": _triple,
    "letter": _letter,
    "symbol": _symbol,
    "scribble": _scribble,
    "zigzag": _zigzag,
    "spiral": _spiral,
    "hatching": _hatching,
    "shape": _shape,
    "blob": _blob,
    "dots": _dots,
    "noise": _noise,
}


# ---- held-out evaluation with the system's fonts (never for training) ---------------------


def font_files(folders: Sequence[Path] = FONT_FOLDERS) -> list[Path]:
    """Every TrueType or OpenType font under the folders, sorted."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found.extend(path for path in folder.rglob("*") if path.suffix.lower() in FONT_SUFFIXES)
    return sorted(found)


def font_nondigits(seed: int, fonts: Sequence[Path] | None = None) -> tuple[FloatArray, list[str]]:
    """Every allowed letter and symbol in every system font, as canvas pictures through
    `to_model_input`; returns the inputs and "font:character" names. Evaluation only."""
    from PIL import ImageFont

    generator = np.random.default_rng(seed)
    inputs: list[FloatArray] = []
    names: list[str] = []
    for path in font_files() if fonts is None else fonts:
        for character in FONT_CHARACTERS:
            size = int(generator.integers(60, 200))
            try:
                font = ImageFont.truetype(str(path), size)
            except OSError:
                break
            picture = Image.new("L", (CANVAS_SIZE * 2, CANVAS_SIZE * 2), 255)
            ImageDraw.Draw(picture).text(
                (CANVAS_SIZE / 2, CANVAS_SIZE / 2), character, font=font, fill=0
            )
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            model_input = to_model_input(Image.open(io.BytesIO(buffer.getvalue())))
            if model_input is None:
                continue
            inputs.append(model_input)
            names.append(f"{path.stem}:{character}")
    if not inputs:
        return np.zeros((0, 28, 28), dtype=np.float32), names
    return np.stack(inputs), names
