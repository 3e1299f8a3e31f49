"""Splitting a drawing into pieces and reading the best grouping (model/numbers.py).

The classifier is an input of `read_number`: these tests hand it probabilities, so they check
the search itself; reading real drawings with the trained model is checked elsewhere.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from model.numbers import (
    MAX_PIECES_PER_DIGIT,
    Candidate,
    candidates,
    ink_pieces,
    picture_pieces,
    read_number,
)
from model.preprocess import ink_map

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


def test_slanted_digits_that_overlap_in_x_stay_in_their_order() -> None:
    """Two slanted strokes whose boxes overlap in x are still ordered by their middles."""
    strokes = [line(120, 10, 40, 200), line(200, 10, 110, 200)]
    assert [piece.strokes for piece in ink_pieces(strokes, 8)] == [(0,), (1,)]


def test_candidates_are_runs_of_neighbouring_pieces() -> None:
    """Every run of one to MAX_PIECES_PER_DIGIT consecutive pieces, and no other."""
    strokes = [line(x, 10, x + 20, 100) for x in range(10, 400, 60)]
    pieces = ink_pieces(strokes, 6)
    found = candidates(pieces, strokes, (500, 120, 6.0))
    runs = {(candidate.first, candidate.last) for candidate in found}
    expected = {
        (first, last)
        for first in range(len(pieces))
        for last in range(first, min(first + MAX_PIECES_PER_DIGIT, len(pieces)))
    }
    assert runs == expected
    assert all(candidate.model_input.shape == (28, 28) for candidate in found)


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
    """Separate blobs of ink are pieces, left to right; a speck is not."""
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
