"""Read a drawing as a number: split it into pieces, then find the best grouping, left to right.

The method is LeCun et al.'s (1998) for cheque amounts: over-segment the drawing into pieces,
score every run of up to `MAX_PIECES_PER_DIGIT` neighbouring pieces with the classifier, and
let dynamic programming pick the grouping whose digits are most probable together. A
classifier with a "not a digit" output makes a fragment (half a 5, the bar of a 7) or a pair
of digits score badly as one digit, so the search keeps digits whole and apart.

- Ink (`ink_pieces`): every stroke is a piece. Strokes are the best evidence there is: two
  digits that touch are still two sets of strokes, and a 4 or a 5 drawn in two strokes
  becomes one digit because the two score best together.
- Pictures (`picture_pieces`): connected components of the ink; a component at least as
  wide as tall and about as tall as the rest (digits that touch) is also cut at the
  valleys of its column profile, along the writing's slant.
- The writing's slant (the most common slant of its steep strokes) gives each piece an
  upright box. Pieces are ordered by its middle, so slanted digits that overlap in x stay
  in order; specks far smaller than the rest are noise and are left out of every group.
- The layout weighs in where the classifier cannot: a 9 drawn as a loop and a tail reads
  as well as a 0 beside a 1, but its parts overlap in x and the loop is half the line's
  height. A reading pays for characters much shorter than the line, and for neighbours
  that overlap in x beyond touching (the lesser of the overlaps as drawn and upright),
  and, for ink, for two one-stroke characters whose strokes join (cross, or one ends on the
  middle of the other): an X's two strokes are each a good 1, but only one character.

The whole drawing is read first: when it is one digit (`is_one_digit`), that is the number
and no piece is looked at, so a single digit costs no more than it did before numbers. Only
a drawing rejected as one digit is split; ink of two or more strokes also when it is not
surely one digit (`is_surely_one_digit`): a 2 and a 1 that touch read as a 2 not quite
rejected.

`candidates` lists the groups and their 28x28 inputs (the same preprocessing as a single
digit, so a one-piece drawing gives exactly today's input); `read_number` takes the
classifier's probabilities for them and returns the reading. Pure NumPy: no I/O, no model.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from model.preprocess import NOISE_FLOOR, FloatArray, ink_to_model_input
from model.strokes import Indices, Points, drawings_to_model_inputs

# A stroke's points: (x, y) pairs, or an (N, 2) array of them.
Stroke = Sequence[tuple[float, float]] | NDArray[np.float64]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the drawing's pixels.

MAX_PIECES_PER_DIGIT = 4
# Strokes that fall into two parts, each at least APART_HEIGHT of the line tall, that do not
# overlap in x (as drawn nor once the slant is undone) are never one digit: their group is
# neither drawn nor scored. On 4 x 600 ink numbers of tuning seeds, 2,202 read right before
# and 2,203 after, and 35 % of the groups go. A gap alone is not enough: the flag of a 5, a
# 9's tail or a crumb beside a digit may stand apart (pruning every group with a gap of a
# twentieth of the line lost 6 numbers). Pictures keep every group: a digit broken by a
# faint scan is several components (pruning cost 7 of 1,000 picture numbers).
APART_HEIGHT = 0.4
# A piece this much smaller (in its longer side) than the largest is a speck, not a stroke.
SPECK_FRACTION = 0.12
# `may_hold_several` looks at a picture's ink reduced to at most this many pixels a side.
SURVEY_SIDE = 96
# A component at least this much wider than tall may be digits that touch (a 3 and a 0 side
# by side are about as wide as tall): it is also cut. Measured on 2 x 300 numbers of
# `python -m train.numbers`: 1.25, 1.0 and 0.85 read the same.
TOUCHING_ASPECT = 1.0
# ... and, for a picture of one part, at least this many pen widths tall: a stroke being
# drawn (a dot, the bar of a 7, the top of a 2) is 1-4, digits that touch 5 or more (MNIST's
# about 8; the page's pen is a 28th of the pad, a digit a third of it or more).
TOUCHING_PENS = 4.0
# ... and at least this share of the tallest component's height.
CUT_HEIGHT_SHARE = 0.6
# Most cuts tried in one component.
MAX_CUTS = 3
# What a `?` costs per piece it covers, as a factor of its probability. Measured on 400
# numbers of MNIST test digits (`python -m train.numbers`): 0.2 and 0.35 read 97.25 %
# exactly, 0.5 97.0 %, 0.7 96.25 % (a broken 7 read as `?1`).
NOT_DIGIT_PENALTY = 0.35
# The writing's slant is undone before pieces are ordered and neighbours compared: the most
# common slant of the steep strokes, found in a histogram of this many bins over -1..1 and
# refined by the mean within SLANT_REACH of the peak; at most MAX_SLANT (x change per unit
# of y).
SLANT_BINS = 40
# Pictures are blurred by this (pixels) before their edges are measured.
SLANT_BLUR = 2.0
SLANT_REACH = 0.15
MAX_SLANT = 0.8
# The histogram is smoothed by a Gaussian of 1.5 bins, cut at 4 sigmas as SciPy's is.
SLANT_SMOOTHING = np.exp(-0.5 * (np.arange(-6, 7) / 1.5) ** 2)
SLANT_SMOOTHING /= SLANT_SMOOTHING.sum()
# Neighbouring characters whose boxes overlap in x (beyond a tenth of the line's height, as
# touching digits do) are rarely two digits: a 9 drawn as its loop and its tail overlaps, a
# 9 beside a 1 does not. A reading pays this many nats per unit of overlap (as a share of
# the narrower character's width).
OVERLAP_COST = 3.0
OVERLAP_SLACK = 0.1
# Neighbouring one-stroke characters whose strokes join (`Piece.joins`: they cross, or one
# ends on the middle of the other, as in an X, an x or an n) pay this many nats: each
# stroke is a good 1 alone, and only the join says they are one character. A join counts
# within JOIN_REACH pens, and only in the middle of the stroke reached (JOIN_END_SHARE of
# its length from either end). Measured on 2 x 600 ink numbers (seeds 11 and 12, not the
# figures') and 200 letters and symbols drawn as ink from train.nondigits' templates: the
# numbers read 92.3 % -> 92.2 % and 90.8 % -> 90.3 %, letters read as digits 49 -> 31. The
# same cost between characters of several strokes (an H's bar on its stem) read 1-2 % fewer
# numbers: digits of several strokes written overlapping their neighbours join them too.
JOIN_COST = 3.0
JOIN_REACH = 0.35
JOIN_END_SHARE = 0.35
# Pairs of strokes whose join each process remembers (under a MB).
JOINS_REMEMBERED = 4096
# A character shorter than this share of the line's height (its tallest piece) is rarely a
# digit of the number (the loop of a 9, the flag of a 5): it pays this many nats per unit
# of the shortfall (as a share of SHORT_SHARE).
SHORT_SHARE = 0.6
SHORT_COST = 2.0
# Measured on 2 x 300 numbers of each kind (`python -m train.numbers`'s generators, other
# seeds than its figures'): without both costs ink numbers read 81.7 % exactly, with them
# 91.3 %; overlap costs of 1.5-5, shortness costs of 2-4 and slacks of 0.1-0.2 read within
# a number of each other. Pictures read the same (97.0 %) with or without them. A cost for
# a character whose parts lie apart in x (a 1 swallowed by its neighbour) read 0-1 % fewer.
# Ink of two or more strokes is answered whole, unsplit, only when "not a digit" is under
# this (and under the threshold). Measured on 2 x 600 ink numbers (seeds 11 and 12, not the
# figures') and 3,000 ink digits traced from MNIST test (seed 2028): numbers of two digits
# that touch or overlap (21, 31, 41, 10, 93, 70, 12) read as one digit, 553 and 543 right
# of 600 -> 557 and 546; the single digits 2,965 -> 2,964 right, 8 of them split instead of
# 3. At 0.5: 555, 544, 2,965; at 0 (always split): 558, 546, 2,961, half of them split.
SURE_NOT_DIGIT = 0.2
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
    # Ink: the strokes of its neighbours (in order) that its stroke crosses, or meets end-on
    # in the middle of either (an X's strokes, an n's arch on its stem).
    joins: frozenset[int] = frozenset()

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
    """One piece per stroke with points, left to right, specks left out; each knows whether
    its stroke joins its neighbours' (`Piece.joins`)."""
    half = max(float(line_width), 1.0) / 2
    drawn = {index: np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
             for index, stroke in enumerate(strokes) if len(stroke) > 0}
    if not drawn:
        return []
    # Every stroke's extremes at once, on all the points packed together.
    packed = np.concatenate(list(drawn.values()))
    lengths = np.fromiter((len(points) for points in drawn.values()), np.intp, len(drawn))
    starts = np.cumsum(lengths) - lengths
    slant = _ink_slant(packed, starts)
    lows = np.minimum.reduceat(packed, starts, axis=0)
    highs = np.maximum.reduceat(packed, starts, axis=0)
    upright = packed[:, 0] - slant * packed[:, 1]
    upright_lows = np.minimum.reduceat(upright, starts).tolist()
    upright_highs = np.maximum.reduceat(upright, starts).tolist()
    bounds = {index: (lows[number], highs[number]) for number, index in enumerate(drawn)}
    pieces = []
    for number, (index, (left, top), (right, bottom)) in enumerate(
        zip(drawn, (lows - half).tolist(), (highs + half).tolist(), strict=True)
    ):
        upright_box = (upright_lows[number] - half, top, upright_highs[number] + half, bottom)
        pieces.append(Piece((left, top, right, bottom), strokes=(index,), upright=upright_box))
    ordered = _ordered(pieces)
    joins: dict[int, set[int]] = {}
    reach = JOIN_REACH * 2 * half
    digests: dict[int, bytes] = {}
    for left, right in itertools.pairwise(ordered):
        (first,), (second,) = left.strokes, right.strokes
        low = np.maximum(bounds[first][0], bounds[second][0]) - reach
        high = np.minimum(bounds[first][1], bounds[second][1]) + reach
        if (low <= high).all() and _remembered_join(
            (first, second), drawn, (low, high), reach, digests
        ):
            joins.setdefault(first, set()).add(second)
            joins.setdefault(second, set()).add(first)
    return [replace(piece, joins=frozenset(joins[piece.strokes[0]]))
            if piece.strokes[0] in joins else piece for piece in ordered]


# The joins of the last JOINS_REMEMBERED pairs of strokes, by a digest of their points and
# the reach: while a number is written, only the stroke under the pen changes from one
# update to the next. Each process keeps its own; digests keep it small whatever the strokes.
_joins_seen: OrderedDict[bytes, bool] = OrderedDict()


def _remembered_join(
    pair: tuple[int, int], drawn: dict[int, NDArray[np.float64]],
    window: tuple[NDArray[np.float64], NDArray[np.float64]], reach: float,
    digests: dict[int, bytes],
) -> bool:
    """`_joined` of two strokes (by index into `drawn`), remembered; `digests` keeps each
    stroke's digest for the call that finds them all."""
    for index in pair:
        if index not in digests:
            digests[index] = hashlib.blake2b(drawn[index].tobytes(), digest_size=16).digest()
    first, second = pair
    key = digests[first] + digests[second] + np.float64(reach).tobytes()
    if key in _joins_seen:
        _joins_seen.move_to_end(key)
        return _joins_seen[key]
    joined = _joins_seen[key] = _joined(drawn[first], drawn[second], window, reach)
    if len(_joins_seen) > JOINS_REMEMBERED:
        _joins_seen.popitem(last=False)
    return joined


def _joined(
    one: NDArray[np.float64], other: NDArray[np.float64],
    window: tuple[NDArray[np.float64], NDArray[np.float64]], reach: float,
) -> bool:
    """Whether two strokes join: they cross, or one ends within `reach` of the other, in the
    middle of the stroke reached (JOIN_END_SHARE of its length from either end). Only their
    segments in the `window` where they come within `reach` (low, high corners) count."""
    if len(one) < 2 or len(other) < 2:
        return False
    low, high = window
    near, other_near = _segments_within(one, low, high), _segments_within(other, low, high)
    if not len(near) or not len(other_near):
        return False
    lazy = _Path(one, near), _Path(other, other_near)
    return (_crosses(*lazy)
            or _ends_on(one, lazy[1], window, reach) or _ends_on(other, lazy[0], window, reach))


class _Path:
    """A stroke's points, the segments to compare (by their first point), and (worked out
    when asked) each point's distance along it as a share of its length."""

    def __init__(self, points: NDArray[np.float64], near: NDArray[np.intp]) -> None:
        self.points, self.near = points, near
        self._along: NDArray[np.float64] | None = None

    @property
    def along(self) -> NDArray[np.float64]:
        if self._along is None:
            steps = np.hypot(*np.diff(self.points, axis=0).T)
            along = np.concatenate([[0.0], np.cumsum(steps)])
            self._along = along / along[-1] if along[-1] > 0 else along
        return self._along


def _segments_within(
    points: NDArray[np.float64], low: NDArray[np.float64], high: NDArray[np.float64]
) -> NDArray[np.intp]:
    """The segments of a path (by their first point) with an end in the box low..high."""
    inside = np.asarray(((points >= low) & (points <= high)).all(axis=1), dtype=bool)
    return np.flatnonzero(inside[:-1] | inside[1:])


def _middle(share: NDArray[np.float64]) -> NDArray[np.bool_]:
    return np.asarray((share >= JOIN_END_SHARE) & (share <= 1 - JOIN_END_SHARE))


def _crosses(one: _Path, other: _Path) -> bool:
    """Whether the segments of two paths cross where each path is in its middle."""
    start = one.points[one.near, None]
    direction = (one.points[one.near + 1] - one.points[one.near])[:, None]
    other_start = other.points[None, other.near]
    other_direction = (other.points[other.near + 1] - other.points[other.near])[None]
    denominator = _cross(direction, other_direction)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = _cross(other_start - start, other_direction) / denominator
        u = _cross(other_start - start, direction) / denominator
    hits = (denominator != 0) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    if not hits.any():
        return False
    rows, columns = np.nonzero(hits)
    mine, theirs = one.near[rows], other.near[columns]
    at = one.along[mine] + t[rows, columns] * (one.along[mine + 1] - one.along[mine])
    other_at = other.along[theirs] + u[rows, columns] * (
        other.along[theirs + 1] - other.along[theirs])
    return bool(np.any(_middle(at) & _middle(other_at)))


def _cross(first: NDArray[np.float64], second: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(first[..., 0] * second[..., 1] - first[..., 1] * second[..., 0])


def _ends_on(
    one: NDArray[np.float64], other: _Path,
    window: tuple[NDArray[np.float64], NDArray[np.float64]], reach: float,
) -> bool:
    """Whether an end of path `one` lies within `reach` of the middle of the other path."""
    low, high = window
    ends = [end for end in (one[0], one[-1]) if (end >= low).all() and (end <= high).all()]
    if not ends:
        return False
    start = other.points[other.near]
    direction = other.points[other.near + 1] - start
    lengths = np.maximum((direction**2).sum(axis=1), 1e-9)
    for end in ends:
        t = np.clip(((end - start) * direction).sum(axis=1) / lengths, 0.0, 1.0)
        distance = np.hypot(*(start + t[:, None] * direction - end).T)
        close = distance <= reach
        if close.any():
            low_share, high_share = other.along[other.near], other.along[other.near + 1]
            if (close & _middle(low_share + t * (high_share - low_share))).any():
                return True
    return False


def ink_piece_count(strokes: Sequence[Stroke], line_width: float) -> int:
    """How many pieces `ink_pieces` finds, without their slant or order: cheap enough to
    count on every update of a drawing."""
    width = max(float(line_width), 1.0)
    sides = [float(np.ptp(points, axis=0).max()) + width
             for points in (np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
                            for stroke in strokes)
             if len(points)]
    if not sides:
        return 0
    largest = max(sides)
    return sum(side >= SPECK_FRACTION * largest for side in sides)


def picture_pieces(ink: FloatArray) -> list[Piece]:
    """Connected components of an ink map (cut where wide), left to right, specks left out."""
    strongest = float(ink.max()) if ink.size else 0.0
    if strongest <= 0.0:
        return []
    kept = ink >= NOISE_FLOOR * strongest
    labels, _ = ndimage.label(kept, structure=np.ones((3, 3), dtype=bool))
    slant = _picture_slant(np.where(kept, ink, 0.0))
    components = [
        (number, found) for number, found in enumerate(ndimage.find_objects(labels), start=1)
        if found is not None
    ]
    tallest = max(found[0].stop - found[0].start for _, found in components)
    pieces: list[Piece] = []
    for number, found in components:
        rows, columns = found
        mask = np.zeros_like(kept)
        mask[found] = labels[found] == number
        if rows.stop - rows.start >= CUT_HEIGHT_SHARE * tallest:
            pieces.extend(_cut_if_wide(mask, rows, columns, slant))
        else:
            # A flat stroke (a 5's loose flag, a 7's bar) is no digits that touch.
            pieces.append(Piece((columns.start, rows.start, columns.stop, rows.stop), mask=mask))
    return _ordered([_with_upright(piece, slant) for piece in pieces])


def candidates(
    pieces: Sequence[Piece],
    strokes: Sequence[Stroke] | None = None,
    canvas: tuple[int, int, float] | None = None,
    ink: FloatArray | None = None,
    known: Callable[[Sequence[Piece]], bool] | None = None,
    draw: Callable[[list[tuple[Points, Indices]]], list[FloatArray | None]] | None = None,
) -> list[Candidate]:
    """Every run of up to MAX_PIECES_PER_DIGIT neighbouring pieces, with its model input;
    for ink, not a run that falls apart into two tall parts (`_falls_apart`).

    Ink pieces need the `strokes` and the `canvas` (width, height, line width); picture
    pieces need the `ink` map they came from. A run with no ink left is skipped. A run for
    which `known` is true is listed without drawing it (no model input): its reading is
    already known to the caller, as a growing drawing's unchanged strokes are. Ink runs
    are drawn together by `draw` (`drawings_to_model_inputs` on the canvas if not given).
    """
    found: list[Candidate | None] = []
    # Ink groups are drawn together, once all are known (`drawings_to_model_inputs`).
    to_draw: list[tuple[int, int, int]] = []
    line = max((piece.box[3] - piece.box[1] for piece in pieces), default=0.0)
    runs = _run_boxes(pieces)
    for first in range(len(pieces)):
        for last in range(first, min(first + MAX_PIECES_PER_DIGIT, len(pieces))):
            group = pieces[first : last + 1]
            if strokes is not None and _falls_apart(first, last, runs, line):
                continue
            if known is not None and known(group):
                found.append(Candidate(first, last, runs[first, last + 1][0], None))
            elif strokes is not None and canvas is not None:
                to_draw.append((len(found), first, last))
                found.append(None)
            else:
                model_input = _picture_group_input(group, ink)
                if model_input is not None:
                    found.append(Candidate(first, last, runs[first, last + 1][0], model_input))
    if to_draw:
        assert strokes is not None and canvas is not None
        drawings = [_group_points(pieces[first : last + 1], strokes) for _, first, last in to_draw]
        inputs = (draw or partial(drawings_to_model_inputs, width=canvas[0], height=canvas[1],
                                  line_width=canvas[2]))(drawings)
        for (position, first, last), model_input in zip(to_draw, inputs, strict=True):
            if model_input is not None:
                found[position] = Candidate(first, last, runs[first, last + 1][0], model_input)
    return [candidate for candidate in found if candidate is not None]


def _run_boxes(pieces: Sequence[Piece]) -> dict[tuple[int, int], tuple[Box, Box]]:
    """The box, as drawn and upright, of every run pieces[start:end] of up to
    MAX_PIECES_PER_DIGIT pieces, each grown from the one a piece shorter."""
    runs: dict[tuple[int, int], tuple[Box, Box]] = {}
    for start, piece in enumerate(pieces):
        drawn, upright = piece.box, piece.upright or piece.box
        runs[start, start + 1] = drawn, upright
        for end in range(start + 2, min(start + MAX_PIECES_PER_DIGIT, len(pieces)) + 1):
            added = pieces[end - 1]
            drawn = _around([drawn, added.box])
            upright = _around([upright, added.upright or added.box])
            runs[start, end] = drawn, upright
    return runs


def _falls_apart(
    first: int, last: int, runs: dict[tuple[int, int], tuple[Box, Box]], line: float
) -> bool:
    """Whether pieces[first:last + 1] (left to right, with the boxes of `runs`) are two parts,
    each at least APART_HEIGHT of the line tall, that do not overlap in x as drawn nor
    upright."""
    for cut in range(first + 1, last + 1):
        (left, left_upright), (right, right_upright) = runs[first, cut], runs[cut, last + 1]
        if min(left[3] - left[1], right[3] - right[1]) < APART_HEIGHT * line:
            continue
        if right[0] > left[2] and right_upright[0] > left_upright[2]:
            return True
    return False


def may_hold_several(kept: NDArray[np.bool_]) -> bool:
    """Whether a picture's ink (which pixels are ink) may be more than one piece: two or more
    parts that are not specks, or one part wide enough, and tall enough for its pen, to be
    digits that touch.

    A cheap look, on the ink reduced to at most SURVEY_SIDE pixels a side, that spares a
    rejected fragment of one digit (the common case while a digit is drawn: a dot, the bar
    of a 7, the top of a 2) a split that would find a single piece or cut one stroke."""
    height, width = kept.shape
    if not kept.any():
        return False
    factor = max(1, math.ceil(max(height, width) / SURVEY_SIDE))
    if factor > 1:
        padded = np.zeros((-(-height // factor) * factor, -(-width // factor) * factor), bool)
        padded[:height, :width] = kept
        kept = np.asarray(
            padded.reshape(padded.shape[0] // factor, factor, -1, factor).any(axis=(1, 3))
        )
    labels, _ = ndimage.label(kept, structure=np.ones((3, 3), dtype=bool))
    sides = [max(rows.stop - rows.start, columns.stop - columns.start)
             for rows, columns in ndimage.find_objects(labels)]
    if sum(bool(side >= SPECK_FRACTION * max(sides)) for side in sides) >= 2:
        return True
    return width >= TOUCHING_ASPECT * height and _pens_tall(kept) >= TOUCHING_PENS


def _pens_tall(kept: NDArray[np.bool_]) -> float:
    """How many pen widths tall the ink is; the pen is twice the 95th percentile of the ink's
    distance to paper (its middle, where strokes are not crossed)."""
    distance = ndimage.distance_transform_edt(np.pad(kept, 1))
    pen = 2.0 * float(np.quantile(distance[distance > 0], 0.95))
    return float(kept.shape[0]) / max(pen, 1.0)


def is_one_digit(row: NDArray[np.float32], not_digit_threshold: float) -> bool:
    """Whether the whole drawing reads as one digit: "not a digit" is under the threshold."""
    return len(row) <= DIGITS or float(row[DIGITS]) < not_digit_threshold


def is_surely_one_digit(row: NDArray[np.float32], not_digit_threshold: float) -> bool:
    """Whether ink of several strokes may be answered whole: one digit, and "not a digit"
    under SURE_NOT_DIGIT too; otherwise its strokes are split and searched."""
    return is_one_digit(row, min(not_digit_threshold, SURE_NOT_DIGIT))


def whole_reading(row: NDArray[np.float32], box: Box, not_digit_threshold: float) -> NumberReading:
    """The whole drawing read as one character: its digit, or `?` when it is not one digit."""
    return NumberReading((_character(box, row, not_digit_threshold),))


def split_or_whole(
    reading: NumberReading | None, row: NDArray[np.float32], box: Box, not_digit_threshold: float
) -> NumberReading:
    """The answer for a drawing that was split: the split's reading, or the whole drawing's
    (`row`, `box`) when the split found nothing, or read one character while the whole reads
    as one digit (a one-character number is always the digit)."""
    if reading is None or (len(reading.digits) == 1 and is_one_digit(row, not_digit_threshold)):
        return whole_reading(row, box, not_digit_threshold)
    return reading


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
    probabilities, a `?` discounted by NOT_DIGIT_PENALTY for each piece it covers.

    The classifier cannot tell a 9 drawn as a loop and a tail from a 0 beside a 1: each
    part reads well on its own. The layout can, so a reading also pays for characters much
    shorter than the line (SHORT_COST) and for neighbours that overlap in x once the slant
    is undone (OVERLAP_COST). None when there are no pieces.
    """
    if not pieces:
        return None
    rows = np.asarray(probabilities, dtype=np.float64).reshape(len(found), -1)
    # Each group's character, as `_character` reads it: its digit's probability, or its
    # not-a-digit probability for a `?` (the characters themselves are made for the winner).
    rejected = (rows[:, DIGITS] >= not_digit_threshold if rows.shape[1] > DIGITS
                else np.zeros(len(rows), dtype=bool))
    confidence = np.where(rejected, rows[:, DIGITS] if rows.shape[1] > DIGITS else 0.0,
                          rows[:, :DIGITS].max(axis=1, initial=0.0))
    spans = np.asarray([candidate.last + 1 - candidate.first for candidate in found])
    # "Not one digit" is true of any run that holds a digit and its neighbour, so a `?`
    # pays for every piece it swallows: the smallest `?` wins.
    scores = (np.log(np.maximum(confidence, FLOOR))
              + np.where(rejected, spans * math.log(NOT_DIGIT_PENALTY), 0.0)).tolist()
    line = max(piece.box[3] - piece.box[1] for piece in pieces)
    plain = [piece.box for piece in pieces]
    uprights = [piece.box if piece.upright is None else piece.upright for piece in pieces]
    # Each run's box as drawn and upright.
    boxes = {(candidate.first, candidate.last + 1): (
        _around(plain[candidate.first : candidate.last + 1]),
        _around(uprights[candidate.first : candidate.last + 1]),
    ) for candidate in found}
    # best[end][first]: the best reading of pieces[:end] whose last character is the run
    # pieces[first:end], as (log score, the candidates read). The last run is part of the
    # state because the next character's cost depends on how far it overlaps it.
    best: dict[int, dict[int, tuple[float, tuple[int, ...]]]] = {}
    for index in sorted(range(len(found)), key=lambda index: found[index].last):
        candidate = found[index]
        first, end = candidate.first, candidate.last + 1
        score = scores[index] - _shortness_cost(candidate.box, line)
        chosen: tuple[int, ...] = ()
        if first == 0:
            total = score
        else:
            options = [
                (before + score
                 - _overlap_cost((previous, first, end), pieces, boxes, line),
                 read)
                for previous, (before, read) in best.get(first, {}).items()
            ]
            if not options:
                continue
            total, chosen = max(options, key=lambda option: option[0])
        ending = best.setdefault(end, {})
        if first not in ending or total > ending[first][0]:
            ending[first] = (total, (*chosen, index))
    finals = best.get(len(pieces))
    if not finals:
        return None
    _, read = max(finals.values(), key=lambda value: value[0])
    return NumberReading(tuple(_character(found[index].box, probabilities[index],
                                          not_digit_threshold) for index in read))


def _shortness_cost(box: Box, line: float) -> float:
    """What a character pays for being much shorter than the line (in nats)."""
    if line <= 0:
        return 0.0
    share = (box[3] - box[1]) / line
    return SHORT_COST * max(0.0, SHORT_SHARE - share) / SHORT_SHARE


def _overlap_cost(
    runs: tuple[int, int, int], pieces: Sequence[Piece],
    boxes: dict[tuple[int, int], tuple[Box, Box]], line: float,
) -> float:
    """What two neighbouring characters, pieces[first:middle] and pieces[middle:end], pay for
    overlapping in x (in nats): the lesser of the overlaps of their boxes as drawn and once
    the slant is undone (`boxes` of each run), so that a wrong guess of the slant never
    costs more."""
    first, middle, end = runs
    (left, left_upright), (right, right_upright) = boxes[(first, middle)], boxes[(middle, end)]
    return min(
        _overlap_share(left, right, line), _overlap_share(left_upright, right_upright, line)
    ) * OVERLAP_COST + _join_cost(pieces[first:middle], pieces[middle:end])


def _join_cost(left: Sequence[Piece], right: Sequence[Piece]) -> float:
    """What two neighbouring one-stroke characters pay when their strokes join."""
    if len(left) > 1 or len(right) > 1:
        return 0.0
    strokes = {index for piece in right for index in piece.strokes}
    return JOIN_COST if any(piece.joins & strokes for piece in left) else 0.0


def _overlap_share(left: Box, right: Box, line: float) -> float:
    """How far two boxes overlap in x beyond OVERLAP_SLACK of the line, as a share (at most 1)
    of the narrower one's width."""
    overlap = min(left[2], right[2]) - max(left[0], right[0]) - OVERLAP_SLACK * line
    narrower = min(left[2] - left[0], right[2] - right[0])
    if overlap <= 0 or narrower <= 0:
        return 0.0
    return min(1.0, overlap / narrower)


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


def _ink_slant(points: NDArray[np.float64], starts: NDArray[np.intp]) -> float:
    """The writing's slant (x change per unit of y, downwards) from its steep segments;
    `points` are every stroke's, packed, and `starts` where each stroke starts."""
    # The steps from one stroke's last point to the next one's first are no segments.
    every = np.delete(np.diff(points, axis=0), starts[1:] - 1, axis=0)
    if not len(every):
        return 0.0
    steep = np.abs(every[:, 1]) > np.abs(every[:, 0])
    return _slant_mode(every[steep, 0] / every[steep, 1], np.abs(every[steep, 1]))


def _picture_slant(ink: FloatArray) -> float:
    """The writing's slant from the edges of an ink map's steep strokes.

    A stroke runs across its ink's gradient, so where the gradient is mostly horizontal the
    stroke is steep, and its slant is minus the gradient's y over its x.
    """
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        return 0.0
    # Only the ink, with a margin of paper for the blur: a canvas is mostly paper, and ink
    # cut out tightly (or at a picture's edge) blurs as it would with paper around it.
    margin = int(3 * SLANT_BLUR) + 1
    window = np.pad(ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1], margin)
    # Smoothed first: the staircase edges of a slanted stroke are only level and upright.
    down, across = np.gradient(ndimage.gaussian_filter(window.astype(np.float32), SLANT_BLUR))
    steep = np.abs(across) > np.abs(down)
    return _slant_mode(-down[steep] / across[steep], np.abs(across[steep]))


def _slant_mode(slants: NDArray[np.float64], weights: NDArray[np.float64]) -> float:
    """The most common slant among steep strokes (weighted), refined by its neighbours' mean.

    The mode and not the mean: the diagonals of a 2, a 4 or a 7 are steep too, but each
    leans its own way, while the hand's slant is shared by every upright stroke.
    """
    if weights.sum() <= 0.0:
        return 0.0
    # A histogram of SLANT_BINS bins over -1..1 (the last bin holds 1 too), by bincount:
    # np.histogram costs several times as much, on every split of ink.
    inside = (slants >= -1.0) & (slants <= 1.0)
    bins = np.minimum(((slants[inside] + 1.0) * (SLANT_BINS / 2)).astype(np.intp), SLANT_BINS - 1)
    histogram = np.bincount(bins, weights=weights[inside], minlength=SLANT_BINS)
    # `ndimage.gaussian_filter1d(histogram, 1.5, mode="constant")`, without its overhead.
    smooth = np.convolve(histogram, SLANT_SMOOTHING, mode="same")
    peak = -1.0 + (int(np.argmax(smooth)) + 0.5) * (2.0 / SLANT_BINS)
    near = np.abs(slants - peak) <= SLANT_REACH
    total = float(weights[near].sum())
    if total <= 0.0:
        return min(max(peak, -MAX_SLANT), MAX_SLANT)
    refined = float(slants[near] @ weights[near]) / total
    return min(max(refined, -MAX_SLANT), MAX_SLANT)


def _with_upright(piece: Piece, slant: float) -> Piece:
    """A picture piece with its upright box."""
    assert piece.mask is not None
    left, top, right, bottom = (int(value) for value in piece.box)
    rows, columns = np.nonzero(piece.mask[top:bottom, left:right])
    upright = columns + left - slant * (rows + top)
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


def _cut_if_wide(
    mask: NDArray[np.bool_], rows: slice, columns: slice, slant: float
) -> list[Piece]:
    """The component as one piece, or cut at the valleys of its upright column profile when
    wide: cuts follow the writing's slant, as the gaps between slanted digits do."""
    height = rows.stop - rows.start
    whole = Piece((columns.start, rows.start, columns.stop, rows.stop), mask=mask)
    found_rows, found_columns = np.nonzero(mask[rows, columns])
    upright = np.round(found_columns - slant * found_rows).astype(np.intp)
    upright -= upright.min()
    width = int(upright.max()) + 1
    if width < TOUCHING_ASPECT * height:
        return [whole]
    profile = np.bincount(upright, minlength=width).astype(np.float64)
    cuts = _valleys(profile, height)
    if not cuts:
        return [whole]
    pieces = []
    for left, right in itertools.pairwise([0, *cuts, width]):
        inside = (upright >= left) & (upright < right)
        if not inside.any():
            continue
        part_rows = found_rows[inside] + rows.start
        part_columns = found_columns[inside] + columns.start
        part = np.zeros_like(mask)
        part[part_rows, part_columns] = True
        box = (int(part_columns.min()), int(part_rows.min()), int(part_columns.max()) + 1,
               int(part_rows.max()) + 1)
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
    return _around([piece.box for piece in group])


def _around(boxes: Sequence[Box]) -> Box:
    """The box around boxes."""
    return (
        min(box[0] for box in boxes),
        min(box[1] for box in boxes),
        max(box[2] for box in boxes),
        max(box[3] for box in boxes),
    )


def _group_points(group: Sequence[Piece], strokes: Sequence[Stroke]) -> tuple[Points, Indices]:
    """A group of ink pieces' strokes, in the order drawn, packed: every point as one (N, 2)
    array and where each stroke starts."""
    chosen = sorted(index for piece in group for index in piece.strokes)
    arrays = [np.asarray(strokes[index], dtype=np.float64).reshape(-1, 2) for index in chosen]
    lengths = np.asarray([len(points) for points in arrays], dtype=np.intp)
    return np.concatenate(arrays), np.cumsum(lengths) - lengths


def _picture_group_input(group: Sequence[Piece], ink: FloatArray | None) -> FloatArray | None:
    """The 28x28 input of a group of picture pieces, drawn as a single digit would be."""
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
