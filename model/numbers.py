"""Read a drawing as a number: split it into pieces, then find the best grouping, left to right.

The method is LeCun et al.'s (1998) for cheque amounts: over-segment the drawing into pieces,
score every run of up to `MAX_PIECES_PER_DIGIT` neighbouring pieces with the classifier, and
let dynamic programming pick the grouping whose digits are most probable together. A
classifier with a "not a digit" output makes a fragment (half a 5, the bar of a 7) or a pair
of digits score badly as one digit, so the search keeps digits whole and apart.

- Ink (`ink_pieces`): every stroke is a piece. Strokes are the best evidence there is: two
  digits that touch are still two sets of strokes, and a 4 or a 5 drawn in two strokes
  becomes one digit because the two score best together.
- Pictures (`picture_pieces`): connected components of the ink; a component much wider than
  tall (digits that touch) is also cut at the valleys of its column profile.
- Pieces are ordered by the middle of their boxes; specks far smaller than the rest are
  noise and are left out of every group.

The whole drawing is read first: when it is one digit (`is_one_digit`), that is the number
and no piece is looked at, so a single digit costs no more than it did before numbers. Only
a drawing rejected as one digit is split.

`candidates` lists the groups and their 28x28 inputs (the same preprocessing as a single
digit, so a one-piece drawing gives exactly today's input); `read_number` takes the
classifier's probabilities for them and returns the reading. Pure NumPy: no I/O, no model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from model.preprocess import NOISE_FLOOR, FloatArray, ink_to_model_input
from model.strokes import points_to_model_input

# A stroke's points: (x, y) pairs, or an (N, 2) array of them.
Stroke = Sequence[tuple[float, float]] | NDArray[np.float64]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the drawing's pixels.

MAX_PIECES_PER_DIGIT = 4
# A piece this much smaller (in its longer side) than the largest is a speck, not a stroke.
SPECK_FRACTION = 0.12
# A component this much wider than tall may be digits that touch: it is also cut.
TOUCHING_ASPECT = 1.25
# Most cuts tried in one component.
MAX_CUTS = 3
# What a `?` costs per piece it covers, as a factor of its probability. Measured on 400
# numbers of MNIST test digits (`python -m train.numbers`): 0.2 and 0.35 read 97.25 %
# exactly, 0.5 97.0 %, 0.7 96.25 % (a broken 7 read as `?1`).
NOT_DIGIT_PENALTY = 0.35
# The writing's slant is undone before pieces are ordered and neighbours compared; it is
# at most this much (x change per unit of y), found among this many steps for pictures,
# from up to this many of their ink pixels.
MAX_SLANT = 0.8
SLANT_STEPS = 33
SLANT_PIXELS = 20_000
# Neighbouring characters whose upright boxes overlap in x (beyond a tenth of the line's
# height, as touching digits do) are rarely two digits: a 9 drawn as its loop and its tail
# overlaps, a 9 beside a 1 does not. A reading pays this many nats per unit of overlap (as
# a share of the narrower character's width).
OVERLAP_COST = 3.0
OVERLAP_SLACK = 0.1
# A character shorter than this share of the line's height (its tallest piece) is rarely a
# digit of the number (the loop of a 9, the flag of a 5): it pays this many nats per unit
# of the shortfall (as a share of SHORT_SHARE).
SHORT_SHARE = 0.6
SHORT_COST = 2.0
# Probabilities are floored at this before taking logs.
FLOOR = 1e-9
DIGITS = 10


@dataclass(frozen=True)
class Piece:
    """A part of the drawing that may be a digit or part of one."""

    box: Box
    # Ink: the indices of its strokes. Pictures: its pixels, as a boolean mask of the ink.
    strokes: tuple[int, ...] = ()
    mask: NDArray[np.bool_] | None = None
    # Its box once the drawing's slant is undone (x' = x - slant * y): slanted neighbours
    # side by side do not overlap in it, parts of one digit do. None: the box itself.
    upright: Box | None = None

    @property
    def middle(self) -> float:
        """The horizontal middle of its upright box."""
        box = self.box if self.upright is None else self.upright
        return (box[0] + box[2]) / 2


@dataclass(frozen=True)
class Candidate:
    """A run of neighbouring pieces, `first` to `last` inclusive, read as one character."""

    first: int
    last: int
    box: Box
    # None when the caller already knows how this group reads (see `candidates`' `known`).
    model_input: FloatArray | None


@dataclass(frozen=True)
class DigitReading:
    """One character of a number: a digit, or None for a piece that is not one."""

    digit: int | None
    confidence: float
    probabilities: tuple[float, ...]
    box: Box

    def as_json(self) -> dict[str, object]:
        """The protocol's per-piece object."""
        return {
            "digit": self.digit,
            "confidence": self.confidence,
            "probabilities": list(self.probabilities),
            "box": [round(float(value), 1) for value in self.box],
        }


@dataclass(frozen=True)
class NumberReading:
    """The drawing read left to right: one character per group of pieces."""

    digits: tuple[DigitReading, ...]

    @property
    def text(self) -> str:
        """The digits, with `?` for a piece that is not a digit."""
        return "".join("?" if piece.digit is None else str(piece.digit) for piece in self.digits)

    @property
    def confidence(self) -> float:
        """The probability that every character is right (the product of theirs)."""
        return math.prod(piece.confidence for piece in self.digits)

    def as_json(self) -> dict[str, object]:
        """The protocol's `number` object."""
        return {
            "text": self.text,
            "confidence": self.confidence,
            "digits": [piece.as_json() for piece in self.digits],
        }


def ink_pieces(strokes: Sequence[Stroke], line_width: float) -> list[Piece]:
    """One piece per stroke with points, left to right, specks left out."""
    pieces = []
    half = max(float(line_width), 1.0) / 2
    drawn = [(index, np.asarray(stroke, dtype=np.float64).reshape(-1, 2))
             for index, stroke in enumerate(strokes) if len(stroke) > 0]
    slant = _ink_slant([points for _, points in drawn])
    for index, points in drawn:
        low, high = points.min(axis=0) - half, points.max(axis=0) + half
        upright = points[:, 0] - slant * points[:, 1]
        pieces.append(Piece(
            (low[0], low[1], high[0], high[1]), strokes=(index,),
            upright=(float(upright.min()) - half, low[1], float(upright.max()) + half, high[1]),
        ))
    return _ordered(pieces)


def picture_pieces(ink: FloatArray) -> list[Piece]:
    """Connected components of an ink map (cut where wide), left to right, specks left out."""
    strongest = float(ink.max()) if ink.size else 0.0
    if strongest <= 0.0:
        return []
    kept = ink >= NOISE_FLOOR * strongest
    labels, _ = ndimage.label(kept, structure=np.ones((3, 3), dtype=bool))
    pieces: list[Piece] = []
    for number, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        rows, columns = found
        mask = np.zeros_like(kept)
        mask[found] = labels[found] == number
        pieces.extend(_cut_if_wide(mask, rows, columns))
    slant = _picture_slant(kept)
    return _ordered([_with_upright(piece, slant) for piece in pieces])


def candidates(
    pieces: Sequence[Piece],
    strokes: Sequence[Stroke] | None = None,
    canvas: tuple[int, int, float] | None = None,
    ink: FloatArray | None = None,
    known: Callable[[Sequence[Piece]], bool] | None = None,
) -> list[Candidate]:
    """Every run of up to MAX_PIECES_PER_DIGIT neighbouring pieces, with its model input.

    Ink pieces need the `strokes` and the `canvas` (width, height, line width); picture
    pieces need the `ink` map they came from. A run with no ink left is skipped. A run for
    which `known` is true is listed without drawing it (no model input): its reading is
    already known to the caller, as a growing drawing's unchanged strokes are.
    """
    found = []
    for first in range(len(pieces)):
        for last in range(first, min(first + MAX_PIECES_PER_DIGIT, len(pieces))):
            group = pieces[first : last + 1]
            if known is not None and known(group):
                found.append(Candidate(first, last, _union(group), None))
                continue
            model_input = _group_input(group, strokes, canvas, ink)
            if model_input is not None:
                found.append(Candidate(first, last, _union(group), model_input))
    return found


def is_one_digit(row: NDArray[np.float32], not_digit_threshold: float) -> bool:
    """Whether the whole drawing reads as one digit: "not a digit" is under the threshold."""
    return len(row) <= DIGITS or float(row[DIGITS]) < not_digit_threshold


def whole_reading(row: NDArray[np.float32], box: Box, not_digit_threshold: float) -> NumberReading:
    """The whole drawing read as one character: its digit, or `?` when it is not one digit."""
    return NumberReading((_character(box, row, not_digit_threshold),))


def read_number(
    pieces: Sequence[Piece],
    found: Sequence[Candidate],
    probabilities: NDArray[np.float32],
    not_digit_threshold: float,
) -> NumberReading | None:
    """The most probable reading of all the pieces, by dynamic programming over groupings.

    `probabilities` has one row per candidate: the ten digits, then (for a model that has
    it) "not a digit". A group reads as its likeliest digit, or as `?` when its not-a-digit
    probability reaches the threshold; a reading scores the product of its characters'
    probabilities, a `?` discounted by NOT_DIGIT_PENALTY for each piece it covers. None when
    there are no pieces.
    """
    if not pieces:
        return None
    readings = [_character(candidate.box, row, not_digit_threshold)
                for candidate, row in zip(found, probabilities, strict=True)]
    # best[i]: the best reading of pieces[:i], as (log probability, characters).
    best: list[tuple[float, tuple[DigitReading, ...]] | None] = [None] * (len(pieces) + 1)
    best[0] = (0.0, ())
    ending: dict[int, list[int]] = {}
    for index, candidate in enumerate(found):
        ending.setdefault(candidate.last + 1, []).append(index)
    for end in range(1, len(pieces) + 1):
        for index in ending.get(end, []):
            start = best[found[index].first]
            if start is None:
                continue
            character = readings[index]
            score = start[0] + math.log(max(character.confidence, FLOOR))
            if character.digit is None:
                # "Not one digit" is true of any run that holds a digit and its neighbour,
                # so a `?` pays for every piece it swallows: the smallest `?` wins.
                pieces_in_run = found[index].last - found[index].first + 1
                score += pieces_in_run * math.log(NOT_DIGIT_PENALTY)
            if best[end] is None or score > best[end][0]:  # type: ignore[index]
                best[end] = (score, (*start[1], character))
    final = best[len(pieces)]
    return None if final is None else NumberReading(final[1])


def _character(box: Box, row: NDArray[np.float32], threshold: float) -> DigitReading:
    """How one group reads: its likeliest digit, or None when it is not a digit."""
    digits = np.asarray(row[:DIGITS], dtype=np.float64)
    not_digit = float(row[DIGITS]) if len(row) > DIGITS else 0.0
    total = float(digits.sum())
    shares = digits / total if total > 0 else np.full(DIGITS, 1.0 / DIGITS)
    probabilities = tuple(float(value) for value in shares)
    if not_digit >= threshold:
        return DigitReading(None, not_digit, probabilities, box)
    digit = int(np.argmax(digits))
    return DigitReading(digit, float(digits[digit]), probabilities, box)


def _ink_slant(strokes: Sequence[NDArray[np.float64]]) -> float:
    """The writing's slant (x change per unit of y, downwards) from its steep segments.

    Each segment within 45 degrees of the vertical counts by its height, so the long
    downstrokes that carry a hand's slant weigh most, and the two sides of a loop cancel.
    """
    steps = [np.diff(points, axis=0) for points in strokes if len(points) > 1]
    if not steps:
        return 0.0
    every = np.concatenate(steps)
    steep = np.abs(every[:, 1]) > np.abs(every[:, 0])
    height = float(np.abs(every[steep, 1]).sum())
    if height == 0.0:
        return 0.0
    across = float((every[steep, 0] * np.sign(every[steep, 1])).sum())
    return float(np.clip(across / height, -MAX_SLANT, MAX_SLANT))


def _picture_slant(kept: NDArray[np.bool_]) -> float:
    """The slant that makes the ink's column profile sharpest (the upright strokes stack)."""
    rows, columns = np.nonzero(kept)
    if len(rows) < 2:
        return 0.0
    step = max(1, len(rows) // SLANT_PIXELS)
    rows, columns = rows[::step].astype(np.float64), columns[::step].astype(np.float64)
    best, sharpest = 0.0, -1.0
    # From upright outwards, so that a tie keeps the smaller slant.
    for slant in sorted(np.linspace(-MAX_SLANT, MAX_SLANT, SLANT_STEPS), key=abs):
        upright = np.round(columns - slant * rows).astype(np.intp)
        profile = np.bincount(upright - upright.min()).astype(np.float64)
        sharpness = float(np.dot(profile, profile))
        if sharpness > sharpest:
            best, sharpest = float(slant), sharpness
    return best


def _with_upright(piece: Piece, slant: float) -> Piece:
    """A picture piece with its upright box."""
    assert piece.mask is not None
    rows, columns = np.nonzero(piece.mask)
    upright = columns - slant * rows
    box = (float(upright.min()), piece.box[1], float(upright.max()) + 1, piece.box[3])
    return Piece(piece.box, piece.strokes, piece.mask, box)


def _ordered(pieces: list[Piece]) -> list[Piece]:
    """Pieces left to right, without specks."""
    if not pieces:
        return []
    largest = max(max(p.box[2] - p.box[0], p.box[3] - p.box[1]) for p in pieces)
    kept = [
        piece for piece in pieces
        if max(piece.box[2] - piece.box[0], piece.box[3] - piece.box[1])
        >= SPECK_FRACTION * largest
    ]
    return sorted(kept, key=lambda piece: piece.middle)


def _cut_if_wide(mask: NDArray[np.bool_], rows: slice, columns: slice) -> list[Piece]:
    """The component as one piece, or cut at the valleys of its column profile when wide."""
    height = rows.stop - rows.start
    width = columns.stop - columns.start
    whole = Piece((columns.start, rows.start, columns.stop, rows.stop), mask=mask)
    if width < TOUCHING_ASPECT * height:
        return [whole]
    profile = mask[rows, columns].sum(axis=0).astype(np.float64)
    cuts = _valleys(profile, height)
    if not cuts:
        return [whole]
    pieces = []
    edges = [0, *cuts, width]
    for left, right in itertools.pairwise(edges):
        part = np.zeros_like(mask)
        part[rows, columns.start + left : columns.start + right] = mask[
            rows, columns.start + left : columns.start + right
        ]
        if part.any():
            filled_rows = np.flatnonzero(part.any(axis=1))
            box = (columns.start + left, int(filled_rows[0]), columns.start + right,
                   int(filled_rows[-1]) + 1)
            pieces.append(Piece(box, mask=part))
    return pieces


def _valleys(profile: NDArray[np.float64], height: int) -> list[int]:
    """Up to MAX_CUTS columns where the ink is thinnest, at least half a height apart."""
    spacing = max(2, height // 2)
    order = np.argsort(profile, kind="stable")
    cuts: list[int] = []
    for column in order:
        column = int(column)
        if column < spacing or column > len(profile) - spacing:
            continue
        if profile[column] > 0.5 * profile.max():
            break
        if all(abs(column - cut) >= spacing for cut in cuts):
            cuts.append(column)
        if len(cuts) == MAX_CUTS:
            break
    return sorted(cuts)


def _union(group: Sequence[Piece]) -> Box:
    return (
        min(piece.box[0] for piece in group),
        min(piece.box[1] for piece in group),
        max(piece.box[2] for piece in group),
        max(piece.box[3] for piece in group),
    )


def _group_input(
    group: Sequence[Piece],
    strokes: Sequence[Stroke] | None,
    canvas: tuple[int, int, float] | None,
    ink: FloatArray | None,
) -> FloatArray | None:
    """The 28x28 input of a group of pieces, drawn as a single digit would be."""
    if strokes is not None and canvas is not None:
        chosen = sorted(index for piece in group for index in piece.strokes)
        width, height, line_width = canvas
        arrays = [np.asarray(strokes[index], dtype=np.float64).reshape(-1, 2) for index in chosen]
        lengths = np.asarray([len(points) for points in arrays], dtype=np.intp)
        return points_to_model_input(
            np.concatenate(arrays), np.cumsum(lengths) - lengths, width, height, line_width
        )
    if ink is None:
        raise ValueError("picture pieces need the ink map they came from")
    # Only the group's box is masked: the input is cut to the ink anyway, and a canvas is
    # mostly paper.
    left, top, right, bottom = (int(value) for value in _union(group))
    window = (slice(top, bottom), slice(left, right))
    mask = np.zeros((bottom - top, right - left), dtype=bool)
    for piece in group:
        assert piece.mask is not None
        mask |= piece.mask[window]
    return ink_to_model_input(np.asarray(ink[window] * mask, dtype=np.float32))
