"""Splitting a drawing into pieces and reading the best grouping (model/numbers.py).

The first tests hand `read_number` probabilities, so they check the search itself. The later
ones read drawings with the committed model, as the server does (the whole drawing first,
then pieces): digits drawn in several strokes, slanted neighbours, touching ones, specks.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from model import METRICS_PATH
from model.inference import Classifier
from model.numbers import (
    APART_HEIGHT,
    MAX_PIECES_PER_DIGIT,
    SURE_NOT_DIGIT,
    Candidate,
    DigitReading,
    NumberReading,
    Piece,
    candidates,
    ink_piece_count,
    ink_pieces,
    is_one_digit,
    is_surely_one_digit,
    picture_pieces,
    read_number,
    split_or_whole,
)
from model.preprocess import ink_map
from model.strokes import strokes_to_model_input

THRESHOLD = 0.5


def row(digit: int | None, confidence: float = 0.98) -> np.ndarray:
    """A probability row over ten digits and "not a digit"."""
    probabilities = np.full(11, (1.0 - confidence) / 10, dtype=np.float32)
    probabilities[10 if digit is None else digit] = confidence
    return probabilities


def line(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """A straight stroke."""
    return [(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10) for step in range(11)]


def test_every_stroke_is_a_piece_left_to_right() -> None:
    """Strokes become pieces ordered by the middle of their boxes, whatever order drawn in."""
    strokes = [line(300, 10, 300, 100), line(10, 10, 60, 100), line(150, 10, 160, 100)]
    pieces = ink_pieces(strokes, 10)
    assert [piece.strokes for piece in pieces] == [(1,), (2,), (0,)]
    assert pieces[0].box == (5.0, 5.0, 65.0, 105.0)


def test_specks_and_empty_strokes_are_left_out() -> None:
    """A dot far smaller than the strokes, and a stroke with no points, are no pieces."""
    strokes = [line(10, 10, 10, 200), [], [(100.0, 100.0)], line(120, 10, 140, 200)]
    assert [piece.strokes for piece in ink_pieces(strokes, 8)] == [(0,), (3,)]


def test_the_piece_count_is_the_pieces_counted() -> None:
    """`ink_piece_count`, counted on every update, agrees with `ink_pieces` (specks too)."""
    generator = np.random.default_rng(11)
    for _ in range(300):
        strokes = [
            [(float(x), float(y)) for x, y in generator.uniform(0, generator.uniform(1, 300),
                                                                 (generator.integers(0, 6), 2))]
            for _ in range(generator.integers(0, 7))
        ]
        line_width = float(generator.uniform(0.5, 20))
        assert ink_piece_count(strokes, line_width) == len(ink_pieces(strokes, line_width))


def test_slanted_digits_that_overlap_in_x_stay_in_their_order() -> None:
    """Two slanted strokes whose boxes overlap in x are still ordered by their middles."""
    strokes = [line(120, 10, 40, 200), line(200, 10, 110, 200)]
    assert [piece.strokes for piece in ink_pieces(strokes, 8)] == [(0,), (1,)]


def test_candidates_are_runs_of_neighbouring_pieces() -> None:
    """Every run of one to MAX_PIECES_PER_DIGIT consecutive pieces that overlap, and no other."""
    strokes = [line(x, 10, x + 20, 100) for x in range(10, 120, 15)]
    pieces = ink_pieces(strokes, 6)
    found = candidates(pieces, strokes, (500, 120, 6.0))
    runs = {(candidate.first, candidate.last) for candidate in found}
    expected = {
        (first, last)
        for first in range(len(pieces))
        for last in range(first, min(first + MAX_PIECES_PER_DIGIT, len(pieces)))
    }
    assert len(pieces) == 8
    assert runs == expected
    assert all(candidate.model_input.shape == (28, 28) for candidate in found)


def test_a_run_never_holds_two_tall_parts_side_by_side() -> None:
    """Two tall strokes that do not overlap in x are never one digit, however close; a short
    stroke beside a tall one (a 5's flag, a crumb) may be, and so may strokes that overlap."""
    pen, height = 6.0, 94.0

    def runs(*strokes: list[tuple[float, float]]) -> set[tuple[int, int]]:
        pieces = ink_pieces(list(strokes), pen)
        return {(candidate.first, candidate.last)
                for candidate in candidates(pieces, list(strokes), (300, 120, pen))}

    # Upright strokes: as drawn and upright, each piece is the pen's width wide.
    tall = line(20, 10, 20, 10 + height)
    assert runs(tall, line(20 + pen + 1, 10, 20 + pen + 1, 10 + height)) == {(0, 0), (1, 1)}
    short = APART_HEIGHT * (height + pen) * 0.9 - pen
    assert (0, 1) in runs(tall, line(60, 10, 60, 10 + short))
    assert (0, 1) in runs(tall, line(20 + pen - 1, 10, 20 + pen - 1, 10 + height))
    # Beyond two tall strokes apart, no run reaches across them.
    found = runs(tall, line(40, 10, 40, 10 + height), line(43, 10, 43, 10 + height))
    assert (1, 2) in found and (0, 1) not in found and (0, 2) not in found


def test_a_single_piece_reads_as_one_character() -> None:
    """One stroke: one candidate, read as its digit with its probability."""
    strokes = [line(50, 10, 50, 200)]
    pieces = ink_pieces(strokes, 10)
    found = candidates(pieces, strokes, (100, 220, 10.0))
    reading = read_number(pieces, found, np.stack([row(1, 0.9)]), THRESHOLD)
    assert reading is not None
    assert reading.text == "1"
    assert reading.confidence == pytest.approx(0.9)
    assert reading.digits[0].box == pieces[0].box


def test_nothing_reads_as_nothing() -> None:
    """No pieces: no reading."""
    assert read_number([], [], np.zeros((0, 11), dtype=np.float32), THRESHOLD) is None


def fake_candidates(count: int) -> list[Candidate]:
    """Runs over `count` pieces in a row, each piece 10 px wide."""
    blank = np.zeros((28, 28), dtype=np.float32)
    return [
        Candidate(first, last, (10.0 * first, 0.0, 10.0 * last + 10, 10.0), blank)
        for first in range(count)
        for last in range(first, min(first + MAX_PIECES_PER_DIGIT, count))
    ]


def reading_of(count: int, scores: dict[tuple[int, int], np.ndarray]) -> str:
    """The text read from `count` pieces when the runs in `scores` get those rows, others junk."""
    strokes = [line(10 * n, 0, 10 * n + 5, 10) for n in range(count)]
    pieces = ink_pieces(strokes, 1)
    found = fake_candidates(count)
    rows = np.stack([scores.get((c.first, c.last), row(None, 0.95)) for c in found])
    reading = read_number(pieces, found, rows, THRESHOLD)
    assert reading is not None
    return reading.text


@pytest.mark.parametrize(
    ("strokes", "joined"),
    [([line(0, 0, 100, 100), line(100, 0, 0, 100)], True),
     ([line(0, 0, 0, 100), line(0, 50, 60, 50)], True),
     ([line(0, 0, 0, 100), line(60, 50, 3, 50)], True),
     ([line(0, 0, 0, 100), line(0, 98, 60, 20)], False),
     ([line(0, 0, 0, 100), line(0, 50, 60, 50)[4:]], False),
     ([line(0, 0, 0, 100), line(40, 0, 40, 100)], False)],
    ids=["x", "bar-from-stem", "bar-onto-stem", "end-on-end", "short-of-stem", "apart"],
)
def test_strokes_join_where_they_cross_or_one_ends_on_the_others_middle(
    strokes: list[list[tuple[float, float]]], joined: bool
) -> None:
    """Strokes of one character join: an x's cross, an H's bar on its stems. Neighbouring
    digits that touch at their ends, or come close, do not."""
    pieces = ink_pieces(strokes, 10)
    assert [bool(piece.joins) for piece in pieces] == [joined, joined]
    if joined:
        assert {index for piece in pieces for index in piece.joins} == {0, 1}


def test_a_remembered_join_follows_the_strokes() -> None:
    """Joins are remembered by the strokes' points: a stroke moved away no longer joins, and
    the same two strokes again join again."""
    still = line(0, 0, 100, 100)
    crossing, apart = line(100, 0, 0, 100), line(100, 60, 100, 100)
    for other, joined in ((crossing, True), (apart, False), (crossing, True), (apart, False)):
        pieces = ink_pieces([still, other], 10)
        assert [bool(piece.joins) for piece in pieces] == [joined, joined]


def test_joined_strokes_are_one_character() -> None:
    """Two strokes that each read as a good 1 are an x when they cross: `?`, not 11. Side by
    side, with the same probabilities, they are 11."""
    rows = np.stack([row(1, 0.97), row(None, 0.9), row(1, 0.97)])
    crossed = [line(0, 0, 60, 100), line(60, 0, 0, 100)]
    apart = [line(0, 0, 10, 100), line(90, 0, 100, 100)]
    for strokes, text in ((crossed, "?"), (apart, "11")):
        pieces = ink_pieces(strokes, 10)
        found = [Candidate(0, 0, pieces[0].box, None), Candidate(0, 1, pieces[1].box, None),
                 Candidate(1, 1, pieces[1].box, None)]
        reading = read_number(pieces, found, rows, THRESHOLD)
        assert reading is not None
        assert reading.text == text


def test_fragments_that_make_a_digit_together_are_merged() -> None:
    """A 5 whose flag does not touch: body and flag are junk alone, a 5 together."""
    assert reading_of(2, {(0, 1): row(5)}) == "5"


def test_a_four_in_two_strokes_beside_a_one_is_read_41() -> None:
    """Pieces 0-1 make a 4, piece 2 is a 1; the 1 is not swallowed by the 4."""
    scores = {(0, 1): row(4), (2, 2): row(1), (1, 2): row(7, 0.6), (0, 0): row(1, 0.5)}
    assert reading_of(3, scores) == "41"


def test_digits_apart_are_not_merged_into_a_pair() -> None:
    """Two digits that each read well stay two, however a pair reads as one."""
    scores = {(0, 0): row(1), (1, 1): row(7), (0, 1): row(None, 0.9)}
    assert reading_of(2, scores) == "17"


def test_a_confident_merge_beats_two_doubtful_digits() -> None:
    """Two pieces read 1 and 1 at 60 % each lose to one 4 at 95 %."""
    scores = {(0, 0): row(1, 0.6), (1, 1): row(1, 0.6), (0, 1): row(4, 0.95)}
    assert reading_of(2, scores) == "4"


def test_a_piece_that_is_no_digit_reads_as_a_question_mark() -> None:
    """A scribble between two digits is `?` and does not spoil its neighbours."""
    scores = {(0, 0): row(2), (1, 1): row(None, 0.97), (2, 2): row(3)}
    assert reading_of(3, scores) == "2?3"


def test_six_digits_read_in_order() -> None:
    """Six single-piece digits read left to right."""
    scores = {(n, n): row(digit) for n, digit in enumerate([2, 0, 2, 6, 1, 1])}
    assert reading_of(6, scores) == "202611"


def test_number_confidence_is_the_product_and_the_json_is_the_protocols() -> None:
    """The number's confidence multiplies its characters'; probabilities sum to 1 per digit."""
    strokes = [line(10, 0, 15, 10), line(40, 0, 45, 10)]
    pieces = ink_pieces(strokes, 1)
    found = fake_candidates(2)
    rows = np.stack([{(0, 0): row(4, 0.9), (1, 1): row(2, 0.8)}.get(
        (c.first, c.last), row(None, 0.99)) for c in found])
    reading = read_number(pieces, found, rows, THRESHOLD)
    assert reading is not None
    answer = reading.as_json()
    assert answer["text"] == "42"
    assert answer["confidence"] == pytest.approx(0.72)
    digits = answer["digits"]
    assert isinstance(digits, list) and len(digits) == 2
    for digit in digits:
        assert set(digit) == {"digit", "confidence", "probabilities", "box"}
        assert sum(digit["probabilities"]) == pytest.approx(1.0)
        assert len(digit["box"]) == 4


def test_picture_pieces_are_connected_components() -> None:
    """Separate blobs of ink are pieces, left to right; a speck is not. However far apart,
    they may be one digit (a faint scan breaks a digit into several), unlike strokes."""
    ink = np.zeros((60, 200), dtype=np.float32)
    ink[10:50, 120:130] = 1.0
    ink[10:50, 20:50] = 1.0
    ink[30:31, 80:81] = 1.0
    pieces = picture_pieces(ink)
    assert [piece.box for piece in pieces] == [(20, 10, 50, 50), (120, 10, 130, 50)]
    found = candidates(pieces, ink=ink)
    assert [(c.first, c.last) for c in found] == [(0, 0), (0, 1), (1, 1)]


def test_touching_digits_in_a_picture_are_cut_at_the_thinnest_column() -> None:
    """A wide component (two blobs joined by a thin bridge) is also cut at the bridge."""
    ink = np.zeros((60, 200), dtype=np.float32)
    ink[10:50, 20:70] = 1.0
    ink[28:32, 70:90] = 1.0
    ink[10:50, 90:140] = 1.0
    pieces = picture_pieces(ink)
    assert len(pieces) >= 2
    assert pieces[0].box[0] == 20 and pieces[-1].box[2] == 140
    assert all(piece.box[2] - piece.box[0] < 120 for piece in pieces)


def test_an_empty_picture_has_no_pieces() -> None:
    """No ink, no pieces."""
    assert picture_pieces(np.zeros((30, 30), dtype=np.float32)) == []


def test_the_numbers_set_draws_digits_left_to_right_with_their_boxes() -> None:
    """`train.numbers` draws each digit once, left to right, and knows where each one is."""
    from train.numbers import Config, draw_number

    generator = np.random.default_rng(1)
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    for index in range(6):
        images[index, 4:24, 10 + index % 3 : 16 + index % 3] = 255
    labels = np.arange(6, dtype=np.uint8)
    drawn = draw_number(images, labels, Config(gap=(0.3, 0.5)), generator, 4)
    assert len(drawn.text) == 4 and len(drawn.boxes) == 4
    assert all(first[2] <= second[0] for first, second in itertools.pairwise(drawn.boxes))
    pieces = picture_pieces(ink_map(Image.open(io.BytesIO(drawn.png))))
    assert len(pieces) == 4


def test_a_reading_is_segmented_right_only_with_a_character_over_each_digit() -> None:
    """One character per digit box, in order; a merge or a split is a segmentation fault."""
    from model.numbers import DigitReading, NumberReading
    from train.numbers import segmented_right

    boxes = ((0.0, 0.0, 10.0, 10.0), (20.0, 0.0, 30.0, 10.0))

    def reading(*spans: tuple[float, float]) -> NumberReading:
        return NumberReading(tuple(
            DigitReading(1, 0.9, (0.1,) * 10, (left, 0.0, right, 10.0)) for left, right in spans
        ))

    assert segmented_right(reading((0, 10), (19, 31)), boxes)
    assert not segmented_right(reading((0, 31)), boxes)
    assert not segmented_right(reading((0, 5), (5, 10), (20, 30)), boxes)
    assert not segmented_right(reading((20, 30), (0, 10)), boxes)
    assert not segmented_right(None, boxes)


def test_a_loop_over_a_tail_reads_as_one_digit_not_two() -> None:
    """A 9 drawn as its loop and its tail: each part reads well alone (0 and 1), but the
    parts overlap in x and the loop is half the line's height, so together they are a 9."""
    loop = Piece((0.0, 0.0, 60.0, 60.0), strokes=(0,))
    tail = Piece((40.0, 40.0, 62.0, 130.0), strokes=(1,))
    found = [
        Candidate(0, 0, loop.box, None), Candidate(0, 1, (0.0, 0.0, 62.0, 130.0), None),
        Candidate(1, 1, tail.box, None),
    ]
    rows = np.stack([row(0, 0.99), row(9, 0.95), row(1, 0.99)])
    reading = read_number([loop, tail], found, rows, THRESHOLD)
    assert reading is not None and reading.text == "9"


def test_slanted_neighbours_are_compared_upright() -> None:
    """Two slanted digits whose boxes overlap in x are not made one by the overlap: their
    upright boxes (slant undone) lie side by side."""
    strokes = [line(130, 10, 30, 200), line(170, 10, 70, 200)]
    pieces = ink_pieces(strokes, 8)
    assert pieces[0].box[2] > pieces[1].box[0]
    assert pieces[0].upright is not None and pieces[1].upright is not None
    assert pieces[0].upright[2] < pieces[1].upright[0]
    found = candidates(pieces, strokes, (300, 220, 8.0))
    # Two 1s at 97 % beat a doubtful 4 unless their overlap is held against them.
    rows = np.stack([{(0, 0): row(1, 0.97), (1, 1): row(1, 0.97)}.get((c.first, c.last),
                                                                      row(4, 0.5))
                     for c in found])
    reading = read_number(pieces, found, rows, THRESHOLD)
    assert reading is not None and reading.text == "11"
    plain = [Piece(piece.box, piece.strokes) for piece in pieces]
    reading = read_number(plain, found, rows, THRESHOLD)
    assert reading is not None and reading.text == "4"


# ---- reading drawings with the committed model ---------------------------------------------

# The page's wide canvas and pen (CSS pixels), and the height of a drawn digit.
CANVAS = (900, 300, 16.0)
HEIGHT = 150.0
Template = list[list[tuple[float, float]]]

# Digits as a hand draws them, in a box of height 1 (x right, y down), stroke by stroke.
ONE: Template = [[(0.3, 0.0), (0.3, 1.0)]]
TWO: Template = [[(0.05, 0.2), (0.2, 0.03), (0.4, 0.0), (0.58, 0.12), (0.58, 0.32), (0.35, 0.6),
                  (0.0, 1.0), (0.65, 1.0)]]
THREE: Template = [[(0.05, 0.1), (0.3, 0.0), (0.55, 0.1), (0.55, 0.3), (0.3, 0.47),
                    (0.6, 0.62), (0.62, 0.85), (0.4, 1.0), (0.05, 0.92)]]
# The stroke that makes an "L" and the bar, then the stem across the bar.
FOUR_IN_TWO: Template = [[(0.35, 0.0), (0.0, 0.65), (0.65, 0.65)], [(0.5, 0.25), (0.5, 1.0)]]
# The body, then a flag that starts well clear of it.
FIVE_LOOSE_FLAG: Template = [
    [(0.12, 0.05), (0.08, 0.45), (0.3, 0.38), (0.5, 0.42), (0.6, 0.6), (0.58, 0.82),
     (0.42, 0.97), (0.2, 1.0), (0.02, 0.9)],
    [(0.28, 0.02), (0.65, 0.0)],
]
SEVEN: Template = [[(0.0, 0.02), (0.6, 0.0), (0.2, 1.0)]]
SEVEN_IN_TWO: Template = [[(0.0, 0.02), (0.6, 0.0)], [(0.6, 0.0), (0.2, 1.0)]]
# The loop (anticlockwise from its right side), then the tail down from it: the loop alone
# reads as a 0 and the tail as a 1.
NINE_IN_TWO: Template = [
    [(0.55 - 0.27 * (1 - math.cos(turn)), 0.25 - 0.24 * math.sin(turn))
     for turn in np.linspace(0.0, 2 * math.pi, 30)],
    [(0.55, 0.2), (0.52, 1.0)],
]
ZERO: Template = [[(0.3 + 0.3 * math.sin(turn), 0.5 - 0.5 * math.cos(turn))
                   for turn in np.linspace(0.0, 2 * math.pi, 40)]]


@pytest.fixture(scope="module")
def classifier() -> Iterator[Classifier]:
    """The committed model, loaded once for the module."""
    yield Classifier()


@pytest.fixture(scope="module")
def threshold() -> float:
    """The committed model's not-a-digit threshold."""
    return float(json.loads(METRICS_PATH.read_text())["not_digit_threshold"])


def written(*digits: Template, slant: float = 0.0, gap: float = 0.35,
            left: float = 60.0) -> list[list[tuple[float, float]]]:
    """Digits written left to right on the canvas, their ink `gap` (a share of the height)
    apart once the slant is undone, the tops leaning right by `slant` per unit of height."""
    strokes = []
    for digit in digits:
        width = max(x for stroke in digit for x, _ in stroke)
        for stroke in digit:
            strokes.append(_dense([
                (left + HEIGHT * (x + slant * (0.5 - y)), 70.0 + HEIGHT * y) for x, y in stroke
            ]))
        left += HEIGHT * (width + gap) + CANVAS[2]
    return strokes


def _dense(points: Sequence[tuple[float, float]], step: float = 4.0) -> list[tuple[float, float]]:
    """A polyline as pointer events every few pixels."""
    dense = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        count = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        dense.extend((x0 + (x1 - x0) * n / count, y0 + (y1 - y0) * n / count)
                     for n in range(count))
    return [*dense, points[-1]]


def read_ink(strokes: list[list[tuple[float, float]]], classifier: Classifier,
             threshold: float) -> str | None:
    """The text the server reads in these strokes (None for no ink)."""
    from train.ink_numbers import read_strokes

    reading = read_strokes(strokes, CANVAS, classifier, threshold)
    return None if reading is None else reading.text


def picture(strokes: list[list[tuple[float, float]]], specks: int = 0) -> bytes:
    """The strokes as the page's canvas shows them (round caps and joins), as PNG bytes;
    `specks` single dark pixels of noise are scattered over it."""
    width, height, line_width = CANVAS
    canvas = Image.new("L", (width, height), 255)
    pen = ImageDraw.Draw(canvas)
    radius = line_width / 2
    for stroke in strokes:
        pen.line(stroke, fill=0, width=round(line_width), joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    generator = np.random.default_rng(3)
    for _ in range(specks):
        canvas.putpixel((int(generator.integers(width)), int(generator.integers(height))), 0)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def read_picture(png: bytes, classifier: Classifier, threshold: float) -> str | None:
    """The text the server reads in a picture (None for no ink)."""
    from train.numbers import read_picture as read

    reading: NumberReading | None = read(png, classifier, threshold)
    return None if reading is None else reading.text


def closest(strokes: list[list[tuple[float, float]]], first: range, second: range) -> float:
    """The smallest distance between the points of two sets of strokes."""
    one = np.array([point for index in first for point in strokes[index]])
    other = np.array([point for index in second for point in strokes[index]])
    return float(np.min(np.hypot(*(one[:, None, :] - other[None, :, :]).transpose(2, 0, 1))))


@pytest.mark.parametrize(
    ("digits", "text"),
    [((FIVE_LOOSE_FLAG,), "5"), ((FOUR_IN_TWO,), "4"), ((SEVEN_IN_TWO,), "7"),
     ((NINE_IN_TWO,), "9"), ((ONE, FIVE_LOOSE_FLAG), "15"), ((FOUR_IN_TWO, SEVEN_IN_TWO), "47"),
     ((SEVEN_IN_TWO, ONE, FOUR_IN_TWO), "714"), ((TWO, NINE_IN_TWO, ONE), "291")],
    ids=["5-loose-flag", "4-in-two", "7-in-two", "9-in-two", "15", "47", "714", "291"],
)
def test_digits_in_several_strokes_read_whole(
    classifier: Classifier, threshold: float, digits: tuple[Template, ...], text: str
) -> None:
    """A 5 whose flag does not touch it, a 4, a 7 and a 9 in two strokes: one digit each,
    alone and beside others."""
    strokes = written(*digits)
    assert read_ink(strokes, classifier, threshold) == text
    assert read_picture(picture(strokes), classifier, threshold) == text


def test_the_loose_flag_really_is_loose() -> None:
    """The 5's flag is drawn clear of its body: the premise of the test above."""
    strokes = written(FIVE_LOOSE_FLAG)
    assert closest(strokes, range(0, 1), range(1, 2)) > 1.5 * CANVAS[2]


@pytest.mark.parametrize(("digits", "text"), [((ONE, SEVEN), "17"), ((SEVEN, ONE), "71"),
                                              ((ONE, ONE, SEVEN, ONE), "1171")])
def test_slanted_digits_that_overlap_in_x_are_split(
    classifier: Classifier, threshold: float, digits: tuple[Template, ...], text: str
) -> None:
    """Slanted 1s and 7s close together overlap in x without touching: still one digit each."""
    strokes = written(*digits, slant=0.45, gap=0.12)
    boxes = [piece.box for piece in ink_pieces(strokes, CANVAS[2])]
    assert any(left[2] > right[0] for left, right in itertools.pairwise(boxes))
    assert all(closest(strokes, range(n, n + 1), range(n + 1, n + 2)) > CANVAS[2]
               for n in range(len(strokes) - 1))
    assert read_ink(strokes, classifier, threshold) == text
    assert read_picture(picture(strokes), classifier, threshold) == text


@pytest.mark.parametrize("gap", [-0.02, 0.05, 0.4], ids=["touching", "close", "apart"])
def test_neighbours_touching_or_not_read_apart(
    classifier: Classifier, threshold: float, gap: float
) -> None:
    """2, 3 and 0 written touching, close or well apart read 230, as ink and as a picture
    (where touching digits are one component, cut at the valley between them)."""
    strokes = written(TWO, THREE, ZERO, gap=gap)
    assert read_ink(strokes, classifier, threshold) == "230"
    png = picture(strokes)
    if gap < 0:
        pieces = picture_pieces(ink_map(Image.open(io.BytesIO(png))))
        # Touching: fewer components than digits, so at least one was cut.
        labels = [piece for piece in pieces if piece.mask is not None]
        assert len(labels) >= 3
    assert read_picture(png, classifier, threshold) == "230"


# An X and a times sign as a hand draws them: two strokes that cross, each a good 1 alone.
CROSSES: dict[str, Template] = {
    "X": [[(0.0, 0.0), (0.75, 1.0)], [(0.75, 0.0), (0.0, 1.0)]],
    "times": [[(0.0, 0.3), (0.6, 0.9)], [(0.6, 0.3), (0.0, 0.9)]],
}


@pytest.mark.parametrize("name", sorted(CROSSES))
def test_strokes_that_cross_are_not_two_digits(
    classifier: Classifier, threshold: float, name: str
) -> None:
    """An X in two crossing strokes is not a digit, nor 11; the same strokes apart are 11."""
    crossed = written(CROSSES[name])
    assert read_ink(crossed, classifier, threshold) == "?"
    apart = written(*([stroke] for stroke in CROSSES[name]), gap=0.4)
    assert read_ink(apart, classifier, threshold) == "11"


def test_nothing_drawn_reads_nothing(classifier: Classifier, threshold: float) -> None:
    """No strokes and a blank canvas: no pieces and no reading."""
    assert ink_pieces([], CANVAS[2]) == []
    assert read_ink([], classifier, threshold) is None
    assert read_picture(picture([]), classifier, threshold) is None


@pytest.mark.parametrize(("digit", "text"), [(TWO, "2"), (ZERO, "0"), (SEVEN, "7")])
def test_one_piece_reads_as_its_digit(
    classifier: Classifier, threshold: float, digit: Template, text: str
) -> None:
    """A digit in one stroke reads as a one-character number."""
    strokes = written(digit)
    assert len(ink_pieces(strokes, CANVAS[2])) == 1
    assert read_ink(strokes, classifier, threshold) == text
    assert read_picture(picture(strokes), classifier, threshold) == text


def test_dots_and_noise_are_left_out(classifier: Classifier, threshold: float) -> None:
    """A dot of the pen beside a number is no piece, nor are specks of noise in a picture."""
    strokes = written(FOUR_IN_TWO, TWO)
    dotted = [*strokes, [(40.0, 230.0)], [(520.0, 60.0), (521.0, 61.0)]]
    assert len(ink_pieces(dotted, CANVAS[2])) == len(strokes)
    assert read_ink(dotted, classifier, threshold) == "42"
    assert read_picture(picture(strokes, specks=40), classifier, threshold) == "42"


def test_the_ink_set_traces_digits_into_strokes_left_to_right() -> None:
    """`train.ink_numbers` thins a digit to a one-pixel skeleton, traces a ring as one closed
    stroke and a bar as one, and writes numbers inside the canvas, digit after digit."""
    from train.ink_numbers import InkConfig, digit_strokes, draw_ink_number, thin

    bar = np.zeros((20, 20), dtype=bool)
    bar[3:17, 8:12] = True
    assert thin(bar).sum(axis=1)[5:15].tolist() == [1] * 10
    rows, columns = np.mgrid[0:28, 0:28]
    distance = np.hypot((rows - 14) / 9, (columns - 14) / 6)
    ring = np.where(np.abs(distance - 1) < 0.25, 255, 0).astype(np.uint8)
    one = np.zeros((28, 28), dtype=np.uint8)
    one[4:24, 13:16] = 255
    generator = np.random.default_rng(1)
    [loop] = digit_strokes(ring, generator) or [None]
    assert loop is not None and np.allclose(loop[0], loop[-1], atol=0.05)
    assert len(digit_strokes(one, generator) or []) == 1
    images, labels = np.stack([ring, one]), np.array([0, 1], dtype=np.uint8)
    drawn, passed_over = draw_ink_number(images, labels, InkConfig(), generator, 5)
    assert passed_over == 0 and len(drawn.text) == len(drawn.boxes) == 5
    assert all(1 <= len(indices) <= 3 for indices in drawn.digit_strokes)
    assert all(first[0] < second[0] for first, second in itertools.pairwise(drawn.boxes))
    points = np.array([point for stroke in drawn.strokes for point in stroke])
    assert points.min() >= 0 and (points.max(axis=0) <= (drawn.width, drawn.height)).all()


def test_the_ink_set_keeps_short_tails_and_draws_a_blotted_loop_as_a_loop() -> None:
    """A tail a tenth of the digit tall (a 2's curl, a 9's hook) is a stroke a pen draws, not
    a spur of the thinning; and a loop filled solid (a 9 in soft pencil) is traced round,
    not through."""
    from train.ink_numbers import digit_strokes

    hooked = np.zeros((28, 28), dtype=np.uint8)
    hooked[4:24, 9:12] = 255  # a stem 20 pixels tall,
    hooked[15:18, 12:15] = 255  # with a tick of 3 pixels to its right, low down
    # Drawn out and back on the way down, without lifting the pen.
    [stem] = digit_strokes(hooked, np.random.default_rng(3), corner_lift=0.0) or [None]
    assert stem is not None and float(np.ptp(stem[:, 0])) > 0.1

    rows, columns = np.mgrid[0:28, 0:28]
    nine = np.zeros((28, 28), dtype=np.uint8)
    nine[np.hypot(rows - 9, columns - 14) <= 6] = 255  # a solid head
    nine[9:25, 18:21] = 255  # and its stem
    strokes = digit_strokes(nine, np.random.default_rng(4), corner_lift=0.0) or []
    drawn = Image.new("1", (120, 120))
    for stroke in strokes:
        ImageDraw.Draw(drawn).line([(10 + 100 * x, 10 + 100 * y) for x, y in stroke], 1, 3)
    ink = np.asarray(drawn)
    enclosed = ndimage.binary_fill_holes(ink) & ~ink
    assert enclosed.sum() > 200  # the head is a loop round paper


def test_letters_are_written_as_ink_stroke_by_stroke() -> None:
    """`write_shape` writes a letter's strokes on the canvas at a digit's size, with the
    page's pen, pointer events a few pixels apart."""
    from train.ink_numbers import InkConfig, write_shape
    from train.nondigits import LETTERS

    config = InkConfig()
    generator = np.random.default_rng(2)
    for name in ("X", "H", "m"):
        strokes, line_width = write_shape(LETTERS[name], config, generator)
        assert len(strokes) == len(LETTERS[name])
        assert config.line_width[0] <= line_width <= config.line_width[1]
        points = np.array([point for stroke in strokes for point in stroke])
        assert points.min() >= 0 and (points.max(axis=0) <= config.canvas).all()
        # The unit box is the height of a digit: an "m" fills the lower half of it.
        share = float(np.ptp([y for stroke in LETTERS[name] for _, y in stroke]))
        height = float(np.ptp(points[:, 1]))
        assert 0.8 * share * config.height_px[0] <= height <= 1.2 * share * config.height_px[1]
        steps = np.concatenate([np.hypot(*np.diff(np.array(stroke), axis=0).T)
                                for stroke in strokes])
        assert steps.max() <= config.spacing_px[1] + 0.2


@pytest.mark.parametrize("size", ["canvas", "at-the-edge", "reduced"])
def test_a_picture_is_split_from_the_ink_its_first_read_cut_out(size: str) -> None:
    """The server splits a rejected picture from the ink its first pass cut out around the
    drawing, not by reading the picture again: the pieces, groups, boxes (in the picture's
    own pixels) and model inputs are those of the whole picture's ink map, also when the
    ink touches the picture's edge and when a large picture was reduced first."""
    from server.decoding import DecodeLimits, SplitRequest, prepare

    strokes = written(TWO, SEVEN_IN_TWO, ONE, slant=0.2, gap=0.1)
    image = Image.open(io.BytesIO(picture(strokes)))
    if size == "at-the-edge":
        image = image.crop((70, 60, 560, 250))
    elif size == "reduced":
        image = image.resize((image.width * 3, image.height * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    limits = DecodeLimits(10_000_000, 50_000_000)

    first = prepare(buffer.getvalue(), limits, include_input=False)
    assert first.pieces is None and first.ink is not None
    split = prepare(SplitRequest(first.ink), limits, include_input=False).split
    assert split is not None

    ink = ink_map(image)
    scale = (image.width / ink.shape[1], image.height / ink.shape[0])
    pieces = picture_pieces(ink)
    groups = candidates(pieces, ink=ink)
    assert len(pieces) >= 3
    assert len(split.pieces) == len(pieces) and len(split.groups) == len(groups)

    def in_picture(box: tuple[float, float, float, float]) -> list[float]:
        return [box[0] * scale[0], box[1] * scale[1], box[2] * scale[0], box[3] * scale[1]]

    for mine, whole in zip(split.pieces, pieces, strict=True):
        assert list(mine.box) == pytest.approx(in_picture(whole.box))
    # Upright boxes (slant undone) agree up to one shift along x, the same for every piece.
    mine_upright = np.array([piece.upright for piece in split.pieces], dtype=np.float64)
    whole_upright = np.array([in_picture(piece.upright) for piece in pieces], dtype=np.float64)
    shift = mine_upright[0, 0] - whole_upright[0, 0]
    np.testing.assert_allclose(mine_upright[:, [0, 2]] - shift, whole_upright[:, [0, 2]], atol=1e-6)
    np.testing.assert_allclose(mine_upright[:, [1, 3]], whole_upright[:, [1, 3]], atol=1e-6)
    for mine_group, whole_group in zip(split.groups, groups, strict=True):
        assert (mine_group.first, mine_group.last) == (whole_group.first, whole_group.last)
        assert list(mine_group.box) == pytest.approx(in_picture(whole_group.box))
        assert mine_group.model_input is not None and whole_group.model_input is not None
        np.testing.assert_allclose(mine_group.model_input, whole_group.model_input, atol=1e-6)


def test_a_number_of_few_strokes_is_not_drawn_twice_when_read_whole_and_split() -> None:
    """Read whole and split in one pass, ink of at most MAX_PIECES_PER_DIGIT strokes takes
    its whole input from its group of every piece: exactly the input, box, piece count and
    PNG it gets read alone. A drawing no group holds whole (more strokes), or whose group of
    every piece is already known, is drawn whole as before."""
    from server.decoding import DecodeLimits, GroupKey, Prepared, SplitRequest, prepare
    from server.protocol import StrokesSnapshot

    limits = DecodeLimits(1_000_000, 10_000_000)
    width, height, line_width = CANVAS

    def both_ways(
        strokes: list[list[tuple[float, float]]], known: frozenset[GroupKey] = frozenset()
    ) -> tuple[Prepared, Prepared]:
        snapshot = StrokesSnapshot(0, width, height, line_width,
                                   tuple(tuple(stroke) for stroke in strokes))
        alone = prepare(snapshot, limits, include_input=True)
        return alone, prepare(SplitRequest(snapshot, known, whole=True), limits,
                              include_input=True)

    # Digits that overlap (a 1 is as wide as its template's 0.3), so that one group may hold
    # them all (`_falls_apart`).
    alone, both = both_ways(written(TWO, SEVEN_IN_TWO, ONE, gap=-0.3))
    assert both.split is not None and len(both.split.pieces) == 4
    assert both.whole_group is not None
    group = both.split.groups[both.whole_group]
    assert (group.first, group.last) == (0, 3)
    assert both.model_input is group.model_input
    np.testing.assert_array_equal(both.model_input, alone.model_input)
    assert (both.box, both.pieces, both.input_png) == (alone.box, alone.pieces, alone.input_png)

    known = frozenset({both.split.keys[both.whole_group]})
    _, again = both_ways(written(TWO, SEVEN_IN_TWO, ONE, gap=-0.3), known)
    assert again.split is not None and again.whole_group is None
    assert again.split.groups[both.whole_group].model_input is None
    np.testing.assert_array_equal(again.model_input, alone.model_input)

    alone, five = both_ways(written(TWO, SEVEN_IN_TWO, ONE, ONE, gap=-0.3))
    assert five.split is not None and len(five.split.pieces) == 5
    assert five.whole_group is None
    np.testing.assert_array_equal(five.model_input, alone.model_input)


def test_ink_pairs_for_training_hold_whole_digits_only() -> None:
    """`train.ink_finetune --ink-pairs` teaches "not a digit" on groups of two or more whole
    digits: a digit and a piece of its neighbour (a 1 beside a 4's bar) is left out, as is a
    digit alone, whole or in part."""
    from train.ink_finetune import holds_whole_digits

    # Digits of one, two and one strokes: strokes 0 | 1, 2 | 3.
    digits = ((0,), (1, 2), (3,))
    pieces = [Piece((0.0, 0.0, 1.0, 1.0), strokes=(index,)) for index in range(4)]
    assert holds_whole_digits(pieces[0:3], digits)
    assert holds_whole_digits(pieces[1:4], digits)
    assert holds_whole_digits(pieces, digits)
    assert not holds_whole_digits(pieces[0:2], digits)  # a 1 and half of the next
    assert not holds_whole_digits(pieces[2:4], digits)  # half a digit and the next
    assert not holds_whole_digits(pieces[1:3], digits)  # one whole digit
    assert not holds_whole_digits(pieces[1:2], digits)


def test_a_split_reading_of_one_character_is_the_whole_drawing() -> None:
    """`split_or_whole`: a split that found nothing, or read one character while the whole
    drawing reads as one digit, answers the whole drawing (a one-character number is always
    the digit); a split of several characters, or of one when the whole was rejected, stands."""
    box = (0.0, 0.0, 10.0, 10.0)
    seven, rejected = row(7), row(None, 0.9)
    one_four = NumberReading((DigitReading(4, 0.9, (0.1,) * 10, box),))
    two = NumberReading((*one_four.digits, DigitReading(1, 0.9, (0.1,) * 10, box)))
    assert split_or_whole(None, seven, box, THRESHOLD).text == "7"
    assert split_or_whole(None, rejected, box, THRESHOLD).text == "?"
    assert split_or_whole(one_four, seven, box, THRESHOLD).text == "7"
    assert split_or_whole(one_four, rejected, box, THRESHOLD) is one_four
    assert split_or_whole(two, seven, box, THRESHOLD) is two
    # Surely one digit only under SURE_NOT_DIGIT, whatever the threshold.
    unsure = row(2, 0.6)
    unsure[10] = SURE_NOT_DIGIT + 0.05
    assert is_one_digit(unsure, THRESHOLD) and not is_surely_one_digit(unsure, THRESHOLD)
    assert is_surely_one_digit(seven, THRESHOLD)
    assert not is_surely_one_digit(rejected, THRESHOLD)


@pytest.mark.parametrize(("digits", "gap", "slant", "text"), [
    ((TWO, ONE), -0.15, 0.2, "21"),
    ((TWO, ONE), -0.05, 0.0, "21"),
    ((ONE, TWO), -0.05, 0.0, "12"),
])
def test_two_digits_that_touch_and_read_as_one_not_surely_are_split(
    classifier: Classifier, threshold: float, digits: tuple[Template, ...], gap: float,
    slant: float, text: str,
) -> None:
    """Two strokes, a 2 and a 1 written so close that they touch: the whole drawing reads as
    one digit, but not surely, so the strokes are split and searched (the whole reading
    alone said one digit)."""
    strokes = written(*digits, gap=gap, slant=slant)
    whole = strokes_to_model_input(strokes, *CANVAS)
    assert whole is not None
    row_of_whole = classifier.predict(whole[None])[0]
    assert is_one_digit(row_of_whole, threshold)
    assert not is_surely_one_digit(row_of_whole, threshold)
    assert read_ink(strokes, classifier, threshold) == text
