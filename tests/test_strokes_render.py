"""Pen strokes drawn straight into the model input agree with the canvas they describe.

The reference is the picture path: the strokes drawn on the full canvas, anti-aliased like a
browser's (4x supersampled), saved as PNG, reopened and run through `to_model_input`.
"""

from __future__ import annotations

import io
import random
import tracemalloc
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from model.inference import Classifier
from model.preprocess import BOX_SIZE, scale_into_box, to_model_input
from model.strokes import (
    _reduced,
    drawings_to_model_inputs,
    strokes_to_model_input,
    thickened_pen,
)
from tests.drawing import DIGIT_PATHS, Strokes, arc, draw_strokes, encode, pen_path

Input = NDArray[np.float32]
Result = TypeVar("Result")
# Canvases the page has: a phone, a tablet, a desktop (square), and phones turned round.
CANVASES = ((440, 440), (388, 388), (280, 280), (440, 300), (300, 440))
DRAWINGS = 300


def canvas_input(
    strokes: Sequence[Sequence[tuple[float, float]]], width: int, height: int, line_width: float
) -> Input | None:
    """The picture path's input for strokes drawn on the full canvas, as a browser would."""
    canvas = draw_strokes(strokes, width, height, line_width, supersampling=4)
    with Image.open(io.BytesIO(encode(canvas))) as picture:
        return to_model_input(picture)


def ink_input(
    strokes: Sequence[Sequence[tuple[float, float]]], width: int, height: int, line_width: float
) -> Input:
    """The ink path's input for strokes that have ink on the canvas."""
    result = strokes_to_model_input(strokes, width, height, line_width)
    assert result is not None, "strokes with ink on the canvas were taken for a blank canvas"
    return result


def placed(digit: int, canvas: tuple[int, int], box: tuple[float, float, float]) -> Strokes:
    """A digit's pen path in a box (left, top, size) on a canvas, as drawn: few points."""
    left, top, size = box
    return [[(left + x * size, top + y * size) for x, y in path] for path in DIGIT_PATHS[digit]]


def scaled(strokes: Strokes, factor: float) -> Strokes:
    """The same drawing on a canvas `factor` times the size."""
    return [[(x * factor, y * factor) for x, y in stroke] for stroke in strokes]


def with_peak_memory(call: Callable[[], Result]) -> tuple[Result, int]:
    """What a call returns, and the most memory (bytes) it held at once."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def difference(first: Input, second: Input) -> float:
    """Mean absolute per-pixel difference of two inputs (ink covers about a fifth of them)."""
    return float(np.abs(first - second).mean())


def drawings(count: int, seed: int) -> list[tuple[int, tuple[int, int], float, Strokes]]:
    """Handwritten-like digits on the page's canvases, with its pen; every fourth thin."""
    generator = random.Random(seed)
    result = []
    for index in range(count):
        canvas = CANVASES[index % len(CANVASES)]
        line_width = generator.uniform(1.5, 4.0) if index % 4 == 3 else canvas[0] / 14
        digit = index % 10
        result.append((digit, canvas, line_width, pen_path(digit, generator, canvas)))
    return result


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """The committed model."""
    return Classifier()


def test_no_strokes_or_no_points_is_blank() -> None:
    """No strokes, or strokes without points, draw nothing: None."""
    assert strokes_to_model_input([], 280, 280, 20.0) is None
    assert strokes_to_model_input([[], []], 280, 280, 20.0) is None


def test_a_single_point_is_a_round_dot() -> None:
    """A one-point stroke is a disc of the pen: round, centred, as the canvas shows it."""
    dot = ink_input([[(60.0, 90.0)]], 200, 200, 30.0)
    rows = np.flatnonzero(dot.any(axis=1))
    columns = np.flatnonzero(dot.any(axis=0))
    disc = dot[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    assert disc.shape == (20, 20)
    assert np.allclose(disc, disc.T, atol=1e-5) and np.allclose(disc, disc[::-1], atol=1e-5)
    assert disc[0, 0] < 0.1 < 0.9 < disc[10, 10], "a disc, not a square"
    reference = canvas_input([[(60.0, 90.0)]], 200, 200, 30.0)
    assert reference is not None and difference(dot, reference) < 0.03


def test_ink_off_the_canvas_is_clipped() -> None:
    """A stroke from far off the canvas draws only what lies on it, as the canvas clips it."""
    far = [[(-100_000.0, 50.0), (50.0, 50.0), (50.0, 80.0)]]
    edge = [[(-5.0, 50.0), (50.0, 50.0), (50.0, 80.0)]]
    assert difference(ink_input(far, 100, 100, 10.0), ink_input(edge, 100, 100, 10.0)) < 0.01
    reference = canvas_input(far, 100, 100, 10.0)
    assert reference is not None
    assert difference(ink_input(far, 100, 100, 10.0), reference) < 0.03


def test_ink_only_off_the_canvas_is_blank() -> None:
    """Strokes that never touch the canvas draw nothing, even when their box overlaps it."""
    assert strokes_to_model_input([[(-50.0, -50.0), (-20.0, -80.0)]], 100, 100, 10.0) is None
    # Its points' box with the pen reaches over the canvas's corner; the stroke does not.
    across_the_corner = [[(-50.0, 20.0), (20.0, -50.0)]]
    assert strokes_to_model_input(across_the_corner, 100, 100, 4.0) is None
    assert canvas_input(across_the_corner, 100, 100, 4.0) is None


def test_a_thin_stroke_across_a_corner_is_widened_for_what_shows() -> None:
    """A thin stroke mostly off the canvas is widened for the part on it, as on the canvas."""
    for strokes in (
        [[(-200.0, 230.0), (230.0, -200.0)]],
        [[(-100.0, 330.0), (100.0, 130.0), (330.0, -100.0)]],
    ):
        reference = canvas_input(strokes, 400, 400, 4.0)
        assert reference is not None
        assert difference(ink_input(strokes, 400, 400, 4.0), reference) < 0.04


def test_a_digit_partly_off_the_canvas_matches_the_canvas() -> None:
    """A digit running off the canvas's edge gives the clipped canvas's input."""
    for digit, (right, down) in ((2, (-150.0, 0.0)), (4, (0.0, 200.0)), (8, (-120.0, -120.0))):
        drawn = pen_path(digit, random.Random(digit), (440, 440))
        strokes = [[(x + right, y + down) for x, y in stroke] for stroke in drawn]
        reference = canvas_input(strokes, 440, 440, 440 / 14)
        assert reference is not None
        assert difference(ink_input(strokes, 440, 440, 440 / 14), reference) < 0.06


def test_a_thin_pen_is_widened_like_the_picture_path_dilates() -> None:
    """A 2 px pen on a 700 px digit is widened to a tenth of the digit, not left a hairline."""
    strokes = placed(7, (1000, 1000), (150.0, 150.0, 700.0))
    thin = ink_input(strokes, 1000, 1000, 2.0)
    broad = ink_input(strokes, 1000, 1000, 70.0)
    assert thickened_pen(2.0, 702.0) > 60.0
    assert thin.sum() > 0.7 * broad.sum()
    assert difference(thin, broad) < 0.02
    # The picture path dilates a faint hairline (0.2 px at 80 px), whose band comes out
    # uneven: its own thin and broad inputs differ by about 0.06.
    reference = canvas_input(strokes, 1000, 1000, 2.0)
    assert reference is not None and difference(thin, reference) < 0.08


def test_a_pen_thick_enough_is_left_alone() -> None:
    """A pen at least 7 % of the digit's size draws as it is."""
    assert thickened_pen(20.0, 200.0) == 20.0
    assert thickened_pen(1.0, 15.0) == 1.0


@pytest.mark.parametrize("factor", [388 / 440, 280 / 440, 1.6])
def test_the_same_drawing_on_another_canvas_gives_the_same_input(factor: float) -> None:
    """The same drawing scaled with its pen to another canvas gives nearly the same input."""
    generator = random.Random(7)
    differences = []
    for digit in range(10):
        strokes = pen_path(digit, generator, (440, 300))
        original = ink_input(strokes, 440, 300, 440 / 14)
        moved = ink_input(
            scaled(strokes, factor), round(440 * factor), round(300 * factor), 440 / 14 * factor
        )
        differences.append(difference(original, moved))
    assert np.mean(differences) < 0.02
    assert max(differences) < 0.1


def test_a_scribble_of_many_points_draws_like_a_few() -> None:
    """An ellipse of 10,000 points (distance transform) draws like one of 300 (row spans)."""
    dense = [arc((200.0, 200.0), (100.0, 150.0), 0, 360, 10_000)]
    sparse = [arc((200.0, 200.0), (100.0, 150.0), 0, 360, 300)]
    assert difference(ink_input(dense, 400, 400, 25.0), ink_input(sparse, 400, 400, 25.0)) < 0.01


def test_the_largest_message_never_draws_the_canvas() -> None:
    """20,000 points on a 4096 px canvas, pen 200, need far less memory than its bitmap."""
    walk = np.cumsum(np.random.default_rng(0).normal(0.0, 20.0, (20_000, 2)), axis=0)
    walk = (walk - walk.min(axis=0)) / np.ptp(walk, axis=0) * 4095
    strokes = [[(float(x), float(y)) for x, y in walk]]
    result, peak = with_peak_memory(lambda: strokes_to_model_input(strokes, 4096, 4096, 200.0))
    assert result is not None and result.shape == (28, 28)
    assert peak < 4 * 1024 * 1024


def test_sharp_corners_of_few_points_are_round() -> None:
    """Hand-made paths of a few points (a 4, a 7) have round joins like the canvas's."""
    for digit in (1, 4, 7):
        strokes = placed(digit, (280, 280), (40.0, 40.0, 200.0))
        reference = canvas_input(strokes, 280, 280, 18.0)
        assert reference is not None
        assert difference(ink_input(strokes, 280, 280, 18.0), reference) < 0.04


@pytest.mark.slow
def test_ink_agrees_with_the_canvas_on_hundreds_of_drawings(classifier: Classifier) -> None:
    """On 300 drawings the inputs differ little and the model answers alike on 99 %."""
    cases = drawings(DRAWINGS, seed=2026)
    ink = np.stack([ink_input(strokes, *canvas, pen) for _, canvas, pen, strokes in cases])
    references = [canvas_input(strokes, *canvas, pen) for _, canvas, pen, strokes in cases]
    assert all(reference is not None for reference in references)
    canvas = np.stack([reference for reference in references if reference is not None])
    per_drawing = np.abs(ink - canvas).mean(axis=(1, 2))
    assert float(per_drawing.mean()) < 0.02
    assert float(np.quantile(per_drawing, 0.9)) < 0.05
    # The digit each would read, over the ten digit outputs: the renderer is on trial here,
    # not where a drawing falls against the not-a-digit threshold. The model before the ink
    # fine-tune answered alike on all 300; the served one, taught uniform-pen ink, differs
    # on 2 (99.3 %; here it reads 99.0 % of the ink and 99.7 % of the canvases right). The
    # inputs' own agreement, the renderer's part, is checked above.
    answers = classifier.predict(ink)[:, :10].argmax(axis=1)
    expected = classifier.predict(canvas)[:, :10].argmax(axis=1)
    assert float((answers == expected).mean()) >= 0.99
    digits = np.array([digit for digit, _, _, _ in cases])
    assert float((answers == digits).mean()) > 0.9


def test_reference_strokes_are_black_on_white_with_round_caps() -> None:
    """The full-canvas renderer draws black on white, with a round cap past a stroke's end."""
    image = draw_strokes([[(50.0, 20.0), (50.0, 80.0)]], 100, 100, 20.0)
    assert image.mode == "L" and image.size == (100, 100)
    assert image.getpixel((50, 50)) == 0
    assert image.getpixel((50, 88)) == 0  # inside the round cap
    assert image.getpixel((40 + 1, 80 + 8)) == 255  # outside it: the corner a square cap fills
    assert image.getpixel((5, 5)) == 255


def test_reference_dot_clipping_and_blank() -> None:
    """The full-canvas renderer draws dots, clips far points, stays white without strokes."""
    assert draw_strokes([[(25.0, 25.0)]], 50, 50, 10.0).getpixel((25, 25)) == 0
    assert draw_strokes([], 50, 50, 10.0).getextrema() == (255, 255)
    far = draw_strokes([[(-100_000.0, 20.0), (100_000.0, 20.0)]], 40, 40, 4.0)
    assert far.getpixel((20, 20)) == 0 and far.getpixel((20, 5)) == 255
    smooth = np.asarray(draw_strokes([[(10.0, 10.0), (30.0, 27.0)]], 40, 40, 4.0, supersampling=4))
    assert len(np.unique(smooth)) > 2, "a supersampled line has anti-aliased edges"
    assert smooth.min() == 0


def packed(strokes: Strokes) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Strokes as `drawings_to_model_inputs` takes them: all points, and each stroke's start."""
    kept = [stroke for stroke in strokes if stroke]
    lengths = np.array([len(stroke) for stroke in kept], dtype=np.intp)
    points = np.array([point for stroke in kept for point in stroke], dtype=np.float64)
    return points.reshape(-1, 2), np.cumsum(lengths) - lengths


def test_drawings_drawn_together_are_each_as_drawn_alone() -> None:
    """Drawn in one pass (the groups of a number), each drawing's input is exactly its own:
    digits of every size, one running off the canvas, one off it entirely, a dot, and a
    scribble of thousands of points (drawn by distances, not spans)."""
    width, height, pen = 900, 300, 16.0
    rng = random.Random(3)
    scribble = [[(rng.uniform(300, 600), rng.uniform(50, 250)) for _ in range(3000)]]
    drawings = [
        *(placed(digit, (width, height), (60 + 80 * digit, 40 + 10 * digit, 60 + 15 * digit))
          for digit in range(10)),
        placed(7, (width, height), (860, 100, 120)),
        [[(-80.0, -80.0), (-40.0, -90.0)]],
        [[(450.0, 150.0)]],
        scribble,
    ]
    together = drawings_to_model_inputs([packed(strokes) for strokes in drawings],
                                        width, height, pen)
    assert together[11] is None
    for strokes, drawn in zip(drawings, together, strict=True):
        alone = strokes_to_model_input(strokes, width, height, pen)
        if alone is None:
            assert drawn is None
        else:
            assert drawn is not None
            np.testing.assert_array_equal(drawn, alone)


@pytest.mark.parametrize("length", [1, 2, 7, 20])
def test_the_reduction_by_4_is_pillows_lanczos(length: int) -> None:
    """The cached matrix that reduces a drawing by 4 gives what Pillow's Lanczos resize does."""
    ink = (np.random.default_rng(length).random((4 * length, 4 * length)) > 0.6).astype(np.float32)
    reduced = _reduced([ink])[0]
    expected = scale_into_box(ink) if length == BOX_SIZE else None
    pillow = np.asarray(
        Image.fromarray(ink, mode="F").resize((length, length), Image.Resampling.LANCZOS,
                                              reducing_gap=3.0), dtype=np.float32)
    pillow = np.clip(pillow, 0.0, None)
    np.testing.assert_allclose(reduced, np.minimum(pillow / max(pillow.max(), 1e-6), 1.0),
                               atol=1e-6)
    if expected is not None:
        np.testing.assert_allclose(reduced, expected, atol=1e-6)


def test_many_long_drawings_drawn_together_hold_little_memory() -> None:
    """The 74 groups of a 20-stroke split, each stroke 1,000 points, are drawn in runs: the
    peak stays near a few scribbles' (a single pass over all of them took 49 MB)."""
    rng = np.random.default_rng(0)
    strokes = []
    for index in range(20):
        walk = np.cumsum(rng.normal(0.0, 3.0, (1000, 2)), axis=0)
        walk = (walk - walk.min(axis=0)) / np.ptp(walk, axis=0) * (200, 900)
        walk += (100 + 150 * index, 50)
        strokes.append([(float(x), float(y)) for x, y in walk])
    groups = [packed(strokes[first : first + size])
              for size in range(1, 5) for first in range(0, 21 - size)]
    inputs, peak = with_peak_memory(lambda: drawings_to_model_inputs(groups, 4096, 1000, 8.0))
    assert all(model_input is not None for model_input in inputs)
    assert peak < 20 * 1024 * 1024
