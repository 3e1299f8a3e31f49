"""Draw pen strokes straight into the 28x28 model input, never onto a full-canvas bitmap.

Owns `strokes_to_model_input`, the ink counterpart of `model.preprocess.to_model_input`:
strokes as a canvas shows them (`#000` on `#fff`, round caps and joins, clipped to the
canvas) become the input the picture path makes of that canvas. The digit's box follows
from the points and the pen, so the ink is drawn once, straight into the 80 px intermediate
size of `model.preprocess`, whose `scale_into_box` and `centre_by_mass` then finish it. A
pen too thin for the digit's size is widened by the picture path's own rule (there it is a
dilation of the drawn ink; here the pen's width is known, so the pen itself is widened).

A round pen's ink is every point within its radius of a stroke, so it is drawn as discs
along the strokes, closer together than the radius, all at once in NumPy: no Python loop
over points. A pixel of the 80 px drawing is ink when its centre lies under the pen; the
Lanczos reduction to 20 px anti-aliases it, as it does a canvas's ink. The cost grows with
the points and with the strokes' length at 80 px, never with the canvas's size.

`drawings_to_model_inputs` draws several drawings of one canvas at once (the groups of a
number's strokes): their discs in one difference array, and the reduction by exactly 4 as
a cached matrix of Pillow's Lanczos weights, so that each drawing costs a few NumPy calls.

Pure NumPy/SciPy, no I/O.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from model.preprocess import (
    BOX_SIZE,
    INTERMEDIATE_SIZE,
    MIN_STROKE_FRACTION,
    TARGET_STROKE_FRACTION,
    FloatArray,
    centre_by_mass,
    peak_at_one,
    scale_into_box,
)

# Discs are drawn along a stroke at most this fraction of the pen's radius apart; the ink's
# edge then dips between two of them by at most 1/32 of the radius.
SPACING = 0.5
# Up to this many rows of discs (a few hundred points) are drawn row by row; more (a
# scribble of thousands) by one distance transform of the drawing, which costs about as
# much as this many.
SPAN_ROWS = 25_000
# Drawings drawn together (`drawings_to_model_inputs`) hold at most this many rows of discs
# at once; a drawing alone holds at most SPAN_ROWS.
BATCH_SPAN_ROWS = 4 * SPAN_ROWS
# The distance transform needs room around the drawing for the pen. A pen of more than this
# radius (drawing pixels) only comes from a canvas smaller than the pen, and is drawn row
# by row.
MAX_DISTANCE_RADIUS = 40.0
# A scribble's discs are placed this many segments at a time, to bound the memory.
CHUNK_SEGMENTS = 4096
# The intermediate drawing's side per pixel of the 20 px box.
REDUCTION = INTERMEDIATE_SIZE // BOX_SIZE

Points = NDArray[np.float64]
Indices = NDArray[np.intp]


class Box(NamedTuple):
    """A rectangle in canvas pixels: left, top, right, bottom."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def longest(self) -> float:
        """The longer side."""
        return max(self.right - self.left, self.bottom - self.top)

    def grown(self, margin: float) -> Box:
        """The box with a margin on every side."""
        return Box(self.left - margin, self.top - margin, self.right + margin, self.bottom + margin)


class Path(NamedTuple):
    """Where the discs of a drawing go.

    One at each of `points`, and `between[i]` evenly spaced inside the segment from
    `begin[i]` by `delta[i]`.
    """

    points: Points
    begin: Points
    delta: Points
    between: Indices


def strokes_to_model_input(
    strokes: Sequence[Sequence[tuple[float, float]]], width: int, height: int, line_width: float
) -> FloatArray | None:
    """Return the 28x28 float32 model input for pen strokes on a canvas, or None if blank.

    The strokes are `(x, y)` points on a `width` x `height` canvas drawn with `line_width`;
    the result is what `to_model_input` makes of that canvas as a browser draws it.
    """
    points, starts = _flatten(strokes)
    return points_to_model_input(points, starts, width, height, line_width)


def points_to_model_input(
    points: Points, starts: Indices, width: int, height: int, line_width: float
) -> FloatArray | None:
    """`strokes_to_model_input` for strokes already packed: every point as one (N, 2) array
    of float64, and the index where each stroke starts (strokes of no points left out)."""
    return drawings_to_model_inputs([(points, starts)], width, height, line_width)[0]


def drawings_to_model_inputs(
    drawings: Sequence[tuple[Points, Indices]], width: int, height: int, line_width: float
) -> list[FloatArray | None]:
    """`points_to_model_input` of several drawings on one canvas (the groups of a number's
    strokes), drawn together: their discs in one pass and their reductions in one product,
    so that each costs a few NumPy calls, not a few dozen."""
    pen = max(float(line_width), 1.0)
    canvas = Box(0.0, 0.0, float(width), float(height))
    inputs: list[FloatArray | None] = [None] * len(drawings)
    together: list[tuple[int, Layout]] = []
    for index, (points, starts) in enumerate(drawings):
        if len(points) == 0:
            continue
        points_box = _bounds(points)
        box = _overlap(points_box.grown(pen / 2), canvas)
        on_canvas = _within(points_box, canvas)
        if box is not None and not on_canvas:
            # Ink runs off the canvas. The box of what is left on it is measured on a first
            # drawing: a stroke may cross the points' box without touching the canvas, and
            # the box's size decides whether the pen is widened.
            box = _measured_box(points, starts, pen, box)
        if box is None:
            continue
        drawn_pen = thickened_pen(pen, box.longest)
        # The picture path dilates the ink it cut from the canvas, so a widened pen reaches
        # past the canvas's edge by as much as it was widened.
        margin = (drawn_pen - pen) / 2
        layout = _layout(points, starts, drawn_pen, box.grown(margin), on_canvas)
        if on_canvas and _by_spans(layout):
            together.append((index, layout))
            continue
        ink = _discs(layout)
        if not on_canvas:
            if not ink.any():
                continue
            ink = _cropped(ink)
        inputs[index] = centre_by_mass(scale_into_box(ink))
    for chunk in _chunks(together):
        drawn = _reduced(_spans_of([layout for _, layout in chunk]))
        for (index, _), digit in zip(chunk, drawn, strict=True):
            inputs[index] = centre_by_mass(digit)
    return inputs


def _chunks(together: Sequence[tuple[int, Layout]]) -> Iterator[list[tuple[int, Layout]]]:
    """Drawings to draw together, in runs of at most BATCH_SPAN_ROWS rows of discs (every
    disc of a run covers as many rows as its widest pen's), so that many long strokes never
    hold more memory at once than a few scribbles would."""
    chunk: list[tuple[int, Layout]] = []
    discs = rows_each = 0
    for item in together:
        layout = item[1]
        wider = max(rows_each, layout.rows_each)
        if chunk and (discs + layout.discs) * wider > BATCH_SPAN_ROWS:
            yield chunk
            chunk, discs, wider = [], 0, layout.rows_each
        chunk.append(item)
        discs += layout.discs
        rows_each = wider
    if chunk:
        yield chunk


def ink_box(
    points: Points, width: int, height: int, line_width: float
) -> tuple[float, float, float, float] | None:
    """Where the pen marked the canvas: x0, y0, x1, y1 in canvas pixels (None when nowhere)."""
    if len(points) == 0:
        return None
    pen = max(float(line_width), 1.0)
    box = _overlap(_bounds(points).grown(pen / 2), Box(0.0, 0.0, float(width), float(height)))
    return None if box is None else (box.left, box.top, box.right, box.bottom)


def thickened_pen(pen: float, longest: float) -> float:
    """The pen that draws what `model.preprocess` makes of thin strokes by dilation.

    The picture path dilates strokes thinner than `MIN_STROKE_FRACTION` of the ink's longer
    side (`longest`) by a disc of radius `round(grow / 2)` at the intermediate size, which
    widens them by twice that radius.
    """
    if pen / longest >= MIN_STROKE_FRACTION or longest <= BOX_SIZE:
        return pen
    scale = min(1.0, INTERMEDIATE_SIZE / longest)
    grow = (TARGET_STROKE_FRACTION * longest - pen) * scale
    radius = max(1, round(grow / 2))
    return pen + 2 * radius / scale


def _flatten(strokes: Sequence[Sequence[tuple[float, float]]]) -> tuple[Points, Indices]:
    """All points as one (N, 2) array, and where each stroke that has points starts."""
    lengths = np.fromiter((len(stroke) for stroke in strokes), dtype=np.intp, count=len(strokes))
    lengths = lengths[lengths > 0]
    total = int(lengths.sum())
    flat = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(strokes)),
        dtype=np.float64,
        count=2 * total,
    )
    return flat.reshape(-1, 2), np.cumsum(lengths) - lengths


def _bounds(points: Points) -> Box:
    """The box of the points."""
    # Column by column: `points.min(axis=0)` is three times slower on a few hundred points.
    across, down = points[:, 0], points[:, 1]
    return Box(float(across.min()), float(down.min()), float(across.max()), float(down.max()))


def _overlap(box: Box, other: Box) -> Box | None:
    """Where two boxes overlap, or None when they do not."""
    left, top = max(box.left, other.left), max(box.top, other.top)
    right, bottom = min(box.right, other.right), min(box.bottom, other.bottom)
    if right <= left or bottom <= top:
        return None
    return Box(left, top, right, bottom)


def _within(box: Box, other: Box) -> bool:
    """Whether a box lies within another."""
    return (
        box.left >= other.left
        and box.top >= other.top
        and box.right <= other.right
        and box.bottom <= other.bottom
    )


def _measured_box(points: Points, starts: Indices, pen: float, box: Box) -> Box | None:
    """The box of the ink inside `box` (on the canvas), from a drawing of it; None if none."""
    ink = _draw(points, starts, pen, box, on_canvas=False)
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        return None
    # Sides the ink reaches stay exactly where they were; the others move in to the ink.
    width = (box.right - box.left) / ink.shape[1]
    height = (box.bottom - box.top) / ink.shape[0]
    return Box(
        box.left + columns[0] * width,
        box.top + rows[0] * height,
        box.right - (ink.shape[1] - 1 - columns[-1]) * width,
        box.bottom - (ink.shape[0] - 1 - rows[-1]) * height,
    )


class Layout(NamedTuple):
    """A drawing at the intermediate size: its discs, its size (columns, rows) and the pen's
    radii there (across, down)."""

    path: Path
    size: Points
    radii: Points

    @property
    def rows_each(self) -> int:
        """How many rows one disc may cover, at most the drawing's rows and one more."""
        return min(math.ceil(2 * float(self.radii[1])) + 1, int(self.size[1]) + 1)

    @property
    def discs(self) -> int:
        """How many discs: one at each point and those between them."""
        return len(self.path.points) + int(self.path.between.sum())


def _draw(points: Points, starts: Indices, pen: float, box: Box, on_canvas: bool) -> FloatArray:
    """Draw the strokes' ink that lies inside `box` at the intermediate size."""
    return _discs(_layout(points, starts, pen, box, on_canvas))


def _layout(points: Points, starts: Indices, pen: float, box: Box, on_canvas: bool) -> Layout:
    """Where the discs of the strokes' ink inside `box` go at the intermediate size.

    `on_canvas` says that every point lies inside `box` with its pen's radius. The box's
    edges are the drawing's edges, so the ink needs no crop. Each side is 4 times as many
    pixels as `scale_into_box` will keep of it (the picture path rounds the shorter side of
    the same box to whole pixels and stretches it to fit; so does this drawing), so the
    digit takes the same place in its box.
    """
    extent = np.array([box.right - box.left, box.bottom - box.top])
    boxed = np.maximum(1.0, np.round(extent * BOX_SIZE / box.longest))
    size = boxed * REDUCTION
    scale = size / extent
    radii = scale * pen / 2
    # Canvas pixel i spans [i, i+1), and so does drawing pixel i.
    where = (points - (box.left, box.top)) * scale
    spacing = SPACING * float(radii.min())
    if on_canvas:
        return Layout(_path(where, starts, spacing), size, radii)
    near = _path_near(where, starts, spacing, -radii - 1.0, size + radii + 1.0)
    return Layout(near, size, radii)


def _path(where: Points, starts: Indices, spacing: float) -> Path:
    """Discs at every point, and inside every segment longer than `spacing` enough more."""
    delta = np.diff(where, axis=0)
    between = (np.hypot(delta[:, 0], delta[:, 1]) / spacing).astype(np.intp)
    # The last point of a stroke and the first of the next make no segment.
    between[starts[1:] - 1] = 0
    return Path(where, where[:-1], delta, between)


def _path_near(
    where: Points, starts: Indices, spacing: float, low: Points, high: Points
) -> Path:
    """The discs of `_path` that lie between `low` and `high`.

    Segments are cut to that box first, so points far off the canvas cost nothing.
    """
    near = np.all((where >= low) & (where <= high), axis=1)
    starts_segment = np.ones(len(where), dtype=bool)
    starts_segment[np.append(starts[1:], len(where)) - 1] = False
    first = np.flatnonzero(starts_segment)
    begin, end = _clip_segments(where[first], where[first + 1], low, high)
    delta = end - begin
    between = (np.hypot(delta[:, 0], delta[:, 1]) / spacing).astype(np.intp)
    return Path(np.concatenate([where[near], begin, end]), begin, delta, between)


def _clip_segments(
    begin: Points, end: Points, low: Points, high: Points
) -> tuple[Points, Points]:
    """The parts of segments that lie in the box from `low` to `high` (Liang-Barsky)."""
    delta = end - begin
    enter = np.zeros(len(begin))
    leave = np.ones(len(begin))
    seen = np.ones(len(begin), dtype=bool)
    for axis in (0, 1):
        step = delta[:, axis]
        start = begin[:, axis]
        flat = step == 0.0
        seen &= ~flat | ((start >= low[axis]) & (start <= high[axis]))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            to_low = (low[axis] - start) / step
            to_high = (high[axis] - start) / step
        enter = np.where(flat, enter, np.maximum(enter, np.minimum(to_low, to_high)))
        leave = np.where(flat, leave, np.minimum(leave, np.maximum(to_low, to_high)))
    seen &= enter <= leave
    begin, delta, enter, leave = begin[seen], delta[seen], enter[seen], leave[seen]
    return begin + delta * enter[:, None], begin + delta * leave[:, None]


def _between(
    begin: Points, delta: Points, between: Indices
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The x and the y of `between[i]` points evenly spaced inside each segment."""
    total = int(between.sum())
    # Where each new point lies along its segment, as a fraction; flat arrays throughout,
    # since gathering rows of an (N, 2) array is several times slower.
    fraction = np.arange(1, total + 1, dtype=np.float64)
    fraction -= np.repeat((np.cumsum(between) - between).astype(np.float64), between)
    fraction /= np.repeat(between + 1.0, between)
    across = np.repeat(begin[:, 0], between)
    across += np.repeat(delta[:, 0], between) * fraction
    down = np.repeat(begin[:, 1], between)
    down += np.repeat(delta[:, 1], between) * fraction
    return across, down


def _by_spans(layout: Layout) -> bool:
    """Whether a drawing's discs are best drawn as spans, row by row: a few hundred of
    them, and a pen no wider than the drawing."""
    spans = layout.discs * layout.rows_each <= SPAN_ROWS
    return (spans or float(layout.radii.max()) > MAX_DISTANCE_RADIUS) and (
        layout.rows_each <= int(layout.size[1])
    )


def _discs(layout: Layout) -> FloatArray:
    """Draw a filled ellipse of `radii` (the pen, in drawing pixels) at every disc of a path.

    A pixel is ink when its centre lies in an ellipse. Spans row by row suit a few hundred
    discs; a distance transform suits a scribble of thousands, at a fixed cost.
    """
    path, size, radii = layout
    columns, rows = int(size[0]), int(size[1])
    rows_each = layout.rows_each
    if layout.discs * rows_each > SPAN_ROWS and float(radii.max()) <= MAX_DISTANCE_RADIUS:
        return _distances(path, columns, rows, radii)
    if rows_each > rows and _covers(_centres(path), columns, rows, radii):
        # A pen wider than the drawing (a canvas smaller than the pen) may cover all of it.
        return np.ones((rows, columns), dtype=np.float32)
    return _spans_of([layout])[0]


def _centres(path: Path) -> Points:
    """Every disc's centre: the points, then the discs inside the segments."""
    if not path.between.any():
        return path.points
    more = np.stack(_between(path.begin, path.delta, path.between), axis=1)
    return np.concatenate([path.points, more])


def _covers(centres: Points, columns: int, rows: int, radii: Points) -> bool:
    """Whether one of the ellipses holds the whole drawing, its farthest corner included."""
    across = np.maximum(np.abs(centres[:, 0]), np.abs(centres[:, 0] - columns)) / radii[0]
    down = np.maximum(np.abs(centres[:, 1]), np.abs(centres[:, 1] - rows)) / radii[1]
    return bool((across * across + down * down <= 1.0).any())


def _spans_of(layouts: Sequence[Layout]) -> list[FloatArray]:
    """Drawings' ellipses as spans, one span of pixels per row each, summed in one
    difference array that holds every drawing, each with a spare row and column."""
    rows_each = max(layout.rows_each for layout in layouts)
    centres = [_centres(layout.path) for layout in layouts]
    counts = [len(each) for each in centres]
    every = np.concatenate(centres) if len(centres) > 1 else centres[0]
    shapes = [(int(layout.size[1]), int(layout.size[0])) for layout in layouts]
    cells = [(rows + 1) * (columns + 1) for rows, columns in shapes]
    offsets = [total - size for total, size in zip(itertools.accumulate(cells), cells, strict=True)]

    def each(values: Sequence[float]) -> NDArray[np.float64]:
        # A drawing's value for each of its discs, as a column.
        return np.repeat(np.asarray(values, dtype=np.float64), counts)[:, None]

    across = each([float(layout.radii[0]) for layout in layouts])
    down = each([float(layout.radii[1]) for layout in layouts])
    columns = each([columns for _, columns in shapes])
    rows = each([rows for rows, _ in shapes])
    # No ellipse needs rows above the drawing, nor more rows than the drawing has.
    top = np.maximum(np.floor(every[:, 1:2] - down), 0.0)
    # Each row's middle from its ellipse's centre, in vertical radii: (ellipse, row).
    height = (top + 0.5 - every[:, 1:2]) / down + np.arange(rows_each) / down
    room = 1.0 - height * height
    # Half the span; negative for a row the ellipse misses, which then gets an empty span.
    half = np.copysign(np.sqrt(np.abs(room)), room) * across
    middle = every[:, 0:1] - 0.5
    begin = np.ceil(middle - half)
    end = np.floor(middle + half) + 1.0
    # Clipped to the drawing; ufuncs, since `np.clip` costs microseconds of Python a call.
    np.maximum(begin, 0.0, out=begin)
    np.minimum(begin, columns, out=begin)
    np.maximum(end, begin, out=end)
    np.minimum(end, columns, out=end)
    # Rows below a drawing all go to its one spare row. Every span starts and ends in one
    # row, so one running sum over all the drawings counts the spans over each pixel.
    row = np.minimum(top + np.arange(rows_each), rows)
    start = row * (columns + 1) + each(offsets)
    total = int(sum(cells))
    change = np.bincount((start + begin).astype(np.intp).ravel(), minlength=total)
    change -= np.bincount((start + end).astype(np.intp).ravel(), minlength=total)
    covered = np.cumsum(change) > 0
    return [
        covered[offset : offset + size].reshape(rows + 1, columns + 1)[:rows, :columns]
        .astype(np.float32)
        for offset, size, (rows, columns) in zip(offsets, cells, shapes, strict=True)
    ]


def _reduced(drawn: Sequence[FloatArray]) -> list[FloatArray]:
    """`scale_into_box` of drawings at the intermediate size (4 times their box): Pillow's
    Lanczos reduction by 4 is a fixed matrix for each side's length."""
    digits = []
    for ink in drawn:
        rows, columns = ink.shape
        # Across first, then down, each rounded to float32, as Pillow does.
        half = (ink @ _lanczos_by_4(columns // REDUCTION).T).astype(np.float32)
        digits.append(peak_at_one((_lanczos_by_4(rows // REDUCTION) @ half).astype(np.float32)))
    return digits


@functools.cache
def _lanczos_by_4(length: int) -> NDArray[np.float64]:
    """The (length, 4 * length) matrix of Pillow's Lanczos reduction of 4 * length pixels
    to `length`."""
    size = REDUCTION * length
    matrix = np.zeros((length, size))
    # Pillow's support is the filter's (3) times the scale, and each output pixel's weights
    # are the filter at its input pixels' centres, normalised to sum to 1.
    support = 3.0 * REDUCTION
    for out in range(length):
        centre = (out + 0.5) * REDUCTION
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), size)
        where = (np.arange(low, high) - centre + 0.5) / REDUCTION
        weights = np.sinc(where) * np.sinc(where / 3.0) * (np.abs(where) < 3.0)
        matrix[out, low:high] = weights / weights.sum()
    matrix.setflags(write=False)
    return matrix


def _distances(path: Path, columns: int, rows: int, radii: Points) -> FloatArray:
    """Ellipses drawn as every pixel within a radius of a pixel that holds a disc's centre."""
    # Room for the centres that lie off the drawing but reach into it.
    margin = math.ceil(float(radii.max())) + 1
    marks = np.ones((rows + 2 * margin, columns + 2 * margin), dtype=bool)
    _mark(marks, path.points[:, 0], path.points[:, 1], margin)
    for first in range(0, len(path.begin), CHUNK_SEGMENTS):
        chunk = slice(first, first + CHUNK_SEGMENTS)
        _mark(marks, *_between(path.begin[chunk], path.delta[chunk], path.between[chunk]), margin)
    distance = ndimage.distance_transform_edt(marks, sampling=(1.0 / radii[1], 1.0 / radii[0]))
    inside = distance[margin : margin + rows, margin : margin + columns] <= 1.0
    return np.asarray(inside, dtype=np.float32)


def _mark(
    marks: NDArray[np.bool_], across: NDArray[np.float64], down: NDArray[np.float64], margin: int
) -> None:
    """Clear the pixels of `marks` that hold a centre (the distance transform's zeros)."""
    # Centres lie at most a radius and a pixel off the drawing, within the margin, so
    # truncation is the floor.
    marks[(down + margin).astype(np.intp), (across + margin).astype(np.intp)] = False


def _cropped(ink: FloatArray) -> FloatArray:
    """The smallest part of an ink map that holds all its ink."""
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
