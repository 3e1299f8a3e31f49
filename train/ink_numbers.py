"""Numbers written as ink: MNIST test digits traced along their skeletons into pen strokes.

Run:  .venv/bin/python -m train.numbers --model model/digits.keras   (every set, this one too)

Owns the ink set of `train.numbers`:
- `digit_strokes`: one 28x28 MNIST digit as the pen paths a person would draw. The digit is
  enlarged, a loop filled solid hollowed into a ring, thinned to a one-pixel skeleton (Zhang
  and Suen's thinning), its spurs pruned (only the shortest, so that a 2's curl or a 9's
  hook stays, drawn out and back on the way), and the skeleton's branches joined into
  strokes the way a hand goes: from the top-most free end, on through each junction along
  the straightest branch (the pen lifts where that turns back), so a 6 or an 8 is one
  stroke and an open 4 is two (the "L" and bar, then the stem). A sharp corner is sometimes
  a pen lift (a 5's flag, a 7's bar drawn apart). Digits whose skeleton needs more than
  `MAX_STROKES` strokes are not used.
  A skeleton can still lose what a pen would not (a bold 8's loops, a blotted corner), so
  the model reads fewer of these digits alone than of MNIST's pictures: `train.numbers`
  reports both, and the numbers whose every digit reads right alone.
- `draw_ink_number`: 2-6 such digits side by side on the page's wide canvas, with the same
  kind of changes as the picture set (size, slant, spacing from overlapping in x to half a
  digit apart, a wandering baseline), the number shrunk to fit the canvas, and pointer
  events every few pixels.
- `read_strokes` (and `read_ink`): the server's policy on ink: the whole drawing first, then
  (when it is not one digit) every stroke a piece, candidates and the search.
- `stream_ink`: the same numbers sent over a real server's WebSocket as `ink` messages,
  a few points at a time as the page sends them, and the final answer's `number.text`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from client import DigitsClient
from model.inference import Classifier
from model.numbers import (
    Box,
    NumberReading,
    candidates,
    ink_pieces,
    is_surely_one_digit,
    read_number,
    split_or_whole,
    whole_reading,
)
from model.strokes import strokes_to_model_input

Point = tuple[float, float]
Stroke = list[Point]

# The digit is enlarged this many times before thinning, so the skeleton is smooth.
UPSCALE = 4
# Grey level (0-255) above which an enlarged pixel is ink; high enough to keep small loops open.
INK_LEVEL = 110
# Enclosed paper at this darker level is a loop of a bold digit, when it is this big.
DARK_LEVEL = 220
MIN_HOLE_PIXELS = 6
# A branch from a free end to a junction shorter than this share of the digit's height is
# a spur of the thinning, not a stroke; so is a traced path this short. The shorter share
# first: it keeps a 2's curl and a 9's tail, which a pen draws. The longer only when that
# leaves more than MAX_STROKES strokes (a blotted digit's spurs).
SPUR_SHARES = (0.05, 0.15)
# A tail shorter than this share (from a junction to a free end) is drawn out and back on
# the way, not by a stroke of its own.
TAIL_SHARE = 0.15
# A part of the ink deeper than this many of its strokes' half-widths is a filled loop;
# the ink in it deeper than HOLLOW half-widths is taken out, leaving a ring to trace.
BLOB_DEPTH = 2.2
HOLLOW = 1.4
# The pen lifts at a corner only when both strokes are at least this share of the height.
LIFT_SHARE = 0.3
# A digit drawn with more strokes than this is not used (a broken or blotted MNIST digit).
MAX_STROKES = 3
# Pixels on either side of a point over which a corner's turn is measured.
CORNER_REACH = 8
# A turn sharper than this (degrees) is a corner where the pen may lift.
CORNER_DEGREES = 70.0
# At a junction the pen goes on along a branch only when it turns less than this much
# (the cosine of 60 degrees).
JUNCTION_TURN = math.cos(math.radians(60))
# Gaussian smoothing of the traced path, in enlarged pixels (the skeleton is a staircase).
SMOOTHING = 2.0

# Neighbours of a pixel clockwise from north (P2 ... P9 in Zhang and Suen's paper).
NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


@dataclass(frozen=True)
class InkConfig:
    """The ink numbers set; every figure comes from one of these."""

    seed: int = 2027  # Seeds the choice of digits, their strokes and their placing.
    count: int = 400  # Numbers in the set, lengths 2-6 in turn.
    canvas: tuple[int, int] = (900, 300)  # The page's wide canvas, CSS pixels.
    line_width: tuple[float, float] = (14.0, 18.0)  # The page's pen, CSS pixels.
    # Digit height before shrinking to fit: from where the page's pen is a tenth of it to
    # where a number fills the canvas's height.
    height_px: tuple[int, int] = (130, 230)
    size_change: float = 0.15  # Digits of one number differ in height by up to this share.
    shear: tuple[float, float] = (-0.3, 0.3)  # The number's slant (x shift per unit of y).
    shear_change: float = 0.08  # Each digit's slant differs from the number's by up to this.
    gap: tuple[float, float] = (-0.05, 0.5)  # Space between neighbours' ink, share of height.
    baseline: float = 0.06  # Each digit moves up or down by up to this share of height.
    spacing_px: tuple[float, float] = (3.0, 8.0)  # Distance between pointer events.
    corner_lift: float = 0.3  # Chance that the pen lifts at a sharp corner.
    margin_px: int = 20  # Paper kept around the number.


@dataclass(frozen=True)
class InkNumber:
    """A number written as strokes on a canvas, with its digits and where each one lies."""

    text: str
    strokes: tuple[Stroke, ...]
    # The strokes of each digit, as indices into `strokes` (in writing order).
    digit_strokes: tuple[tuple[int, ...], ...]
    boxes: tuple[Box, ...]
    width: int
    height: int
    line_width: float


# ---- skeletons -----------------------------------------------------------------------------


def _thinning_tables() -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which of the 256 neighbourhoods lose their middle pixel in each sub-step."""
    first = np.zeros(256, dtype=bool)
    second = np.zeros(256, dtype=bool)
    for code in range(256):
        p2, p3, p4, p5, p6, p7, p8, p9 = ((code >> bit) & 1 for bit in range(8))
        ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
        count = p2 + p3 + p4 + p5 + p6 + p7 + p8 + p9
        rises = sum(1 for before, after in itertools.pairwise(ring)
                    if before == 0 and after == 1)
        removable = 2 <= count <= 6 and rises == 1
        first[code] = removable and p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        second[code] = removable and p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return first, second


FIRST_STEP, SECOND_STEP = _thinning_tables()
CODE_KERNEL = np.zeros((3, 3), dtype=np.int32)
for _bit, (_row, _column) in enumerate(NEIGHBOURS):
    CODE_KERNEL[_row + 1, _column + 1] = 1 << _bit


def thin(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Zhang and Suen's thinning: a one-pixel-wide skeleton of a binary picture."""
    skeleton = np.pad(mask, 1)
    changed = True
    while changed:
        changed = False
        for table in (FIRST_STEP, SECOND_STEP):
            codes = ndimage.correlate(skeleton.astype(np.int32), CODE_KERNEL, mode="constant")
            remove = skeleton & table[codes]
            if remove.any():
                skeleton &= ~remove
                changed = True
    return skeleton[1:-1, 1:-1]


Pixel = tuple[int, int]


def _adjacency(skeleton: NDArray[np.bool_]) -> dict[Pixel, list[Pixel]]:
    """Each skeleton pixel's neighbours; a diagonal step only where no side step joins them.

    Without that rule every staircase of the skeleton would look like a junction.
    """
    height, width = skeleton.shape
    pixels = [(int(row), int(column)) for row, column in zip(*np.nonzero(skeleton), strict=True)]

    def inked(row: int, column: int) -> bool:
        return 0 <= row < height and 0 <= column < width and bool(skeleton[row, column])

    adjacency: dict[Pixel, list[Pixel]] = {}
    for row, column in pixels:
        found = []
        for step_row, step_column in NEIGHBOURS:
            other = (row + step_row, column + step_column)
            if not inked(*other):
                continue
            diagonal = step_row != 0 and step_column != 0
            if diagonal and (inked(row + step_row, column) or inked(row, column + step_column)):
                continue
            found.append(other)
        adjacency[(row, column)] = found
    return adjacency


def _branches(adjacency: dict[Pixel, list[Pixel]]) -> list[list[Pixel]]:
    """The skeleton as branches: pixel paths between ends and junctions, and closed loops."""
    seen: set[tuple[Pixel, Pixel]] = set()
    branches: list[list[Pixel]] = []
    nodes = [pixel for pixel, others in adjacency.items() if len(others) != 2]
    for node in nodes:
        for first in adjacency[node]:
            if (node, first) in seen:
                continue
            path = [node, first]
            seen.update({(node, first), (first, node)})
            while len(adjacency[path[-1]]) == 2:
                following = [other for other in adjacency[path[-1]] if other != path[-2]]
                if not following or (path[-1], following[0]) in seen:
                    break
                seen.update({(path[-1], following[0]), (following[0], path[-1])})
                path.append(following[0])
            branches.append(path)
    # Loops with no junction (a 0) are left: start each at its top pixel.
    visited = {pixel for branch in branches for pixel in branch}
    for pixel in sorted(adjacency):
        if pixel in visited or len(adjacency[pixel]) != 2:
            continue
        path = [pixel]
        visited.add(pixel)
        previous = None
        while True:
            following = [other for other in adjacency[path[-1]] if other != previous]
            step = next((other for other in following if other not in visited), None)
            if step is None:
                break
            previous = path[-1]
            path.append(step)
            visited.add(step)
        path.append(pixel)
        branches.append(path)
    return branches


def _pruned(skeleton: NDArray[np.bool_], spur: float) -> NDArray[np.bool_]:
    """The skeleton without spurs (short branches from a free end to a junction) and crumbs."""
    skeleton = skeleton.copy()
    for _ in range(4):
        adjacency = _adjacency(skeleton)
        removed = False
        for branch in _branches(adjacency):
            ends = (len(adjacency[branch[0]]), len(adjacency[branch[-1]]))
            free = ends.count(1)
            if len(branch) >= spur or free == 0:
                continue
            if free == 2:
                # A crumb on its own; the middle of a branch-less component.
                pixels = branch
            else:
                pixels = [pixel for pixel in branch if len(adjacency[pixel]) < 3]
            for row, column in pixels:
                skeleton[row, column] = False
            removed = True
        if not removed:
            break
    return skeleton


# ---- strokes ---------------------------------------------------------------------------------


def _direction(path: Sequence[Pixel], at_start: bool) -> NDArray[np.float64]:
    """The way a path heads out of its start (or into its end), as a unit vector (x, y)."""
    reach = min(CORNER_REACH, len(path) - 1)
    if at_start:
        first, second = path[0], path[reach]
    else:
        first, second = path[-1 - reach], path[-1]
    vector = np.array([second[1] - first[1], second[0] - first[0]], dtype=np.float64)
    length = float(np.hypot(*vector))
    return vector / length if length > 0 else vector


def _join(branches: list[list[Pixel]], tail: float) -> list[list[Pixel]]:
    """Branches joined into strokes as a hand would: from the top-most free end (an odd
    junction if there is none), on through each junction along the straightest branch,
    going out and back along any branch to a free end shorter than `tail` pixels."""
    unused = set(range(len(branches)))
    strokes: list[list[Pixel]] = []
    while unused:
        degree: dict[Pixel, int] = {}
        for index in unused:
            for end in (branches[index][0], branches[index][-1]):
                degree[end] = degree.get(end, 0) + 1
        odd = [pixel for pixel, count in degree.items() if count % 2 == 1]
        # People start at the top, and on the left when two starts are level.
        start = min(odd or list(degree), key=lambda pixel: (pixel[0] + 0.3 * pixel[1]))
        path: list[Pixel] = [start]
        while True:
            here = path[-1]
            heading = _direction(path, at_start=False) if len(path) > 1 else None
            options = []
            for index in unused:
                branch = branches[index]
                if branch[0] == here:
                    options.append((index, branch))
                if branch[-1] == here:
                    options.append((index, branch[::-1]))
            if not options:
                break
            tails = [option for option in options
                     if len(option[1]) < tail and degree.get(option[1][-1], 0) == 1]
            if heading is not None and tails and len(tails) < len(options):
                # A short tail on the way (a 9's hook, the curl of a 2) is drawn out and
                # back: a pen does not lift for it.
                for index, branch in tails:
                    unused.discard(index)
                    path.extend(branch[1:])
                    path.extend(branch[::-1][1:])
                options = [option for option in options if option[0] in unused]
            if heading is None:
                # The first branch: the one heading down (or right), as a pen leaves a start.
                chosen = max(options, key=lambda option: _direction(option[1], True)[1])
            else:
                chosen = max(options, key=lambda option: float(
                    np.dot(heading, _direction(option[1], True))))
                if float(np.dot(heading, _direction(chosen[1], True))) < JUNCTION_TURN:
                    # Turning back at a junction (the stem of a 4 after its bar): the pen
                    # lifts, and the branch is drawn by a stroke of its own.
                    break
            unused.discard(chosen[0])
            path.extend(chosen[1][1:])
        strokes.append(path)
    return strokes


def _smoothed(path: Sequence[Pixel]) -> NDArray[np.float64]:
    """A pixel path as (x, y) points, its staircase smoothed away (closed loops stay closed)."""
    points = np.array([(column + 0.5, row + 0.5) for row, column in path], dtype=np.float64)
    if len(points) < 3:
        return points
    closed = path[0] == path[-1]
    mode = "wrap" if closed else "nearest"
    body = points[:-1] if closed else points
    smooth = np.asarray(ndimage.gaussian_filter1d(body, SMOOTHING, axis=0, mode=mode),
                        dtype=np.float64)
    if not closed:
        # The ends stay where they were: smoothing would pull them in.
        smooth[0], smooth[-1] = body[0], body[-1]
        return smooth
    return np.concatenate([smooth, smooth[:1]])


def _corners(points: NDArray[np.float64]) -> list[int]:
    """Indices where the path turns sharper than CORNER_DEGREES (the sharpest of each bend)."""
    found: list[int] = []
    reach = CORNER_REACH
    for index in range(reach, len(points) - reach):
        before = points[index] - points[index - reach]
        after = points[index + reach] - points[index]
        norms = float(np.hypot(*before) * np.hypot(*after))
        if norms == 0:
            continue
        turn = math.degrees(math.acos(max(-1.0, min(1.0, float(np.dot(before, after)) / norms))))
        if turn > CORNER_DEGREES and (not found or index - found[-1] > 2 * reach):
            found.append(index)
    return found


def _hollowed(mask: NDArray[np.bool_], thinned: NDArray[np.bool_]) -> NDArray[np.bool_] | None:
    """The digit with its blobs hollowed into rings, or None when it has no blob.

    A loop so bold that no paper shows in it, not even lighter (a 9 in soft pencil), is a
    blob far deeper than the digit's strokes. A pen draws it as a loop, so its inside
    deeper than HOLLOW half-widths is taken out."""
    if not thinned.any():
        return None
    depth = ndimage.distance_transform_edt(mask)
    half_width = float(np.median(depth[thinned]))
    deep, _ = ndimage.label(depth > HOLLOW * half_width)
    blobs = np.unique(deep[depth > BLOB_DEPTH * half_width])
    blobs = blobs[blobs > 0]
    if len(blobs) == 0:
        return None
    return mask & ~np.isin(deep, blobs)


def _traced(mask: NDArray[np.bool_], digit_height: float) -> list[list[Pixel]] | None:
    """The ink's pen paths, at most MAX_STROKES of them: blobs hollowed and only the
    shortest spurs pruned, each given up in turn where that needs more strokes; None when
    no way does."""
    thinned = thin(mask)
    hollowed = _hollowed(mask, thinned)
    skeletons = [thinned] if hollowed is None else [thin(hollowed), thinned]
    for skeleton in skeletons:
        for spur in SPUR_SHARES:
            paths = _paths(skeleton, spur * digit_height, TAIL_SHARE * digit_height)
            if 0 < len(paths) <= MAX_STROKES:
                return paths
    return None


def _paths(thinned: NDArray[np.bool_], spur: float, tail: float) -> list[list[Pixel]]:
    """A thinned digit's pen paths, spurs and crumbs shorter than `spur` pixels left out,
    tails shorter than `tail` drawn out and back."""
    branches = _branches(_adjacency(_pruned(thinned, spur)))
    # Crumbs (a blot of the scan, a loose end) are not strokes a person would draw.
    return [path for path in _join(branches, tail) if len(path) >= spur]


def digit_strokes(
    digit: NDArray[np.uint8], generator: np.random.Generator, corner_lift: float = 0.3
) -> list[NDArray[np.float64]] | None:
    """A 28x28 MNIST digit as pen paths of (x, y) points in a box of height 1 (x from 0).

    None when its skeleton needs more than MAX_STROKES strokes.
    """
    size = digit.shape[0] * UPSCALE
    enlarged = np.asarray(
        Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8
    )
    mask = enlarged > INK_LEVEL
    # A bold digit's loops (of a 6, an 8, a 9) show only as lighter pixels among dark ones:
    # a hole at a darker level is a hole of the digit too.
    dark = enlarged > DARK_LEVEL
    holes, _ = ndimage.label(ndimage.binary_fill_holes(dark) & ~dark)
    sizes = np.bincount(holes.ravel())
    sizes[0] = 0
    mask &= ~(sizes >= MIN_HOLE_PIXELS)[holes]
    # Pinholes in thick strokes would become little loops of the skeleton.
    mask = ndimage.binary_closing(mask, iterations=1) | mask
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    digit_height = float(rows[-1] - rows[0] + 1)
    paths = _traced(mask, digit_height)
    if paths is None:
        return None
    strokes: list[NDArray[np.float64]] = []
    for number, pixels in enumerate(paths):
        path = _smoothed(pixels)
        pieces = [path]
        for corner in _corners(path):
            total = len(strokes) + len(pieces) + len(paths) - number - 1
            last = pieces[-1]
            # Path points are about a pixel apart, so indices measure length.
            cut = corner - (len(path) - len(last))
            long_enough = min(cut, len(last) - cut) >= LIFT_SHARE * digit_height
            if long_enough and total < MAX_STROKES and generator.random() < corner_lift:
                pieces[-1:] = [last[: cut + 1], last[cut:]]
        strokes.extend(pieces)
    if not strokes:
        return None
    every = np.concatenate(strokes)
    top, left = float(every[:, 1].min()), float(every[:, 0].min())
    height = max(float(every[:, 1].max()) - top, 1.0)
    return [(stroke - (left, top)) / height for stroke in strokes]


def resampled(points: NDArray[np.float64], spacing: float) -> NDArray[np.float64]:
    """Points every `spacing` along a path (its ends kept), as pointer events come."""
    steps = np.hypot(*np.diff(points, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    total = float(along[-1])
    if total <= spacing:
        return points[[0, -1]] if total > 0 else points[:1]
    targets = np.append(np.arange(0.0, total, spacing), total)
    return np.stack([np.interp(targets, along, points[:, 0]),
                     np.interp(targets, along, points[:, 1])], axis=1)


# ---- numbers ---------------------------------------------------------------------------------


def draw_ink_number(
    images: NDArray[np.uint8], labels: NDArray[np.uint8], config: InkConfig,
    generator: np.random.Generator, length: int,
) -> tuple[InkNumber, int]:
    """One number of `length` random test digits, written as strokes; and how many digits
    were passed over for needing too many strokes."""
    traced: list[tuple[int, list[NDArray[np.float64]]]] = []
    skipped = 0
    while len(traced) < length:
        index = int(generator.integers(len(images)))
        strokes = digit_strokes(images[index], generator, config.corner_lift)
        if strokes is None:
            skipped += 1
            continue
        traced.append((index, strokes))
    height = float(generator.uniform(*config.height_px))
    shear = float(generator.uniform(*config.shear))
    placed: list[list[NDArray[np.float64]]] = []
    x = 0.0
    for number, (_, strokes) in enumerate(traced):
        size = height * (1 + generator.uniform(-config.size_change, config.size_change))
        slant = shear + generator.uniform(-config.shear_change, config.shear_change)
        drop = generator.uniform(-config.baseline, config.baseline) * height
        scaled = []
        for stroke in strokes:
            points = stroke * size
            # Slant about the digit's middle row; y grows downwards, so the top leans right
            # for a positive slant.
            points[:, 0] += slant * (size / 2 - points[:, 1])
            points[:, 1] += (height - size) / 2 + drop
            scaled.append(points)
        left = min(float(points[:, 0].min()) for points in scaled)
        if number:
            x += generator.uniform(*config.gap) * height
        for points in scaled:
            points[:, 0] += x - left
        x = max(float(points[:, 0].max()) for points in scaled)
        placed.append(scaled)
    width, canvas_height = config.canvas
    every = np.concatenate([points for strokes in placed for points in strokes])
    low, high = every.min(axis=0), every.max(axis=0)
    room = np.array([width, canvas_height], dtype=np.float64) - 2 * config.margin_px
    # A person writes a long number smaller so that it fits the page.
    fit = min(1.0, float(np.min(room / np.maximum(high - low, 1.0))))
    offset = (np.array([width, canvas_height]) - (high - low) * fit) / 2
    line_width = float(generator.uniform(*config.line_width))
    spacing = float(generator.uniform(*config.spacing_px))
    strokes_out: list[Stroke] = []
    digit_indices: list[tuple[int, ...]] = []
    boxes: list[Box] = []
    for strokes in placed:
        indices = []
        for points in strokes:
            where = resampled((points - low) * fit + offset, spacing)
            indices.append(len(strokes_out))
            strokes_out.append([(round(float(x), 1), round(float(y), 1)) for x, y in where])
        digit_indices.append(tuple(indices))
        ink = np.array([point for index in indices for point in strokes_out[index]])
        half = line_width / 2
        boxes.append((float(ink[:, 0].min()) - half, float(ink[:, 1].min()) - half,
                      float(ink[:, 0].max()) + half, float(ink[:, 1].max()) + half))
    text = "".join(str(int(labels[index])) for index, _ in traced)
    return InkNumber(text, tuple(strokes_out), tuple(digit_indices), tuple(boxes), width,
                     canvas_height, line_width), skipped


def write_shape(
    shape: Sequence[Sequence[tuple[float, float]]], config: InkConfig,
    generator: np.random.Generator,
) -> tuple[list[Stroke], float]:
    """A shape given as pen strokes in a unit box (a letter of `train.nondigits`), written on
    the canvas as a digit of the set would be: its height, slant and pen, its points moved a
    little (2 % of its height) as a hand does, pointer events every few pixels. Returns the
    strokes and the pen's width."""
    height = float(generator.uniform(*config.height_px))
    slant = float(generator.uniform(*config.shear))
    spacing = float(generator.uniform(*config.spacing_px))
    width, canvas_height = config.canvas
    strokes: list[Stroke] = []
    for stroke in shape:
        unit = np.asarray(stroke, dtype=np.float64) + generator.normal(0, 0.02, (len(stroke), 2))
        points = np.stack([(unit[:, 0] + slant * (0.5 - unit[:, 1])) * height + width / 2,
                           (unit[:, 1] - 0.5) * height + canvas_height / 2], axis=1)
        strokes.append([(round(float(x), 1), round(float(y), 1))
                        for x, y in resampled(points, spacing)])
    return strokes, float(generator.uniform(*config.line_width))


def _strokes_box(strokes: Sequence[Sequence[Point]], line_width: float) -> Box:
    every = np.array([point for stroke in strokes for point in stroke], dtype=np.float64)
    half = line_width / 2
    return (float(every[:, 0].min()) - half, float(every[:, 1].min()) - half,
            float(every[:, 0].max()) + half, float(every[:, 1].max()) + half)


def read_ink(
    drawn: InkNumber, classifier: Classifier, threshold: float
) -> NumberReading | None:
    """Read an ink number as the server reads its ink."""
    return read_strokes(list(drawn.strokes), (drawn.width, drawn.height, drawn.line_width),
                        classifier, threshold)


def read_strokes(
    strokes: Sequence[Sequence[Point]], canvas: tuple[int, int, float],
    classifier: Classifier, threshold: float,
) -> NumberReading | None:
    """Read strokes on a canvas (width, height, line width) as the server reads its ink: the
    whole drawing first, and only when it is not surely one digit every stroke as a piece. The
    points are taken as the server keeps them, as float32: a near tie between two readings
    can turn on that."""
    width, height, line_width = canvas
    strokes = [np.asarray(stroke, dtype=np.float32).astype(np.float64).reshape(-1, 2)
               for stroke in strokes]
    whole = strokes_to_model_input(strokes, width, height, line_width)
    if whole is None:
        return None
    row = classifier.predict(whole[None])[0]
    pieces = ink_pieces(strokes, line_width)
    box = _strokes_box(strokes, line_width)
    if is_surely_one_digit(row, threshold) or len(pieces) <= 1:
        return whole_reading(row, box, threshold)
    found = candidates(pieces, strokes, canvas)
    if not found:
        return whole_reading(row, box, threshold)
    inputs = [candidate.model_input for candidate in found]
    probabilities = classifier.predict(np.stack([item for item in inputs if item is not None]))
    return split_or_whole(read_number(pieces, found, probabilities, threshold), row, box,
                          threshold)


# ---- over a real server's WebSocket --------------------------------------------------------

# Points per `ink` message: the page sends what the pen did in each 50 ms.
POINTS_PER_MESSAGE = 6


async def stream_ink(url: str, numbers: Sequence[InkNumber], timeout: float = 30.0) -> list[str]:
    """Write each number on one connection as `ink` messages, point by point, and return the
    final answer's `number.text` for each ("" when the server gave no number)."""
    texts: list[str] = []
    async with DigitsClient.connect(url, timeout=timeout) as client:
        for drawn in numbers:
            last = await client.send_clear()
            for stroke_index, stroke in enumerate(drawn.strokes):
                for start in range(0, len(stroke), POINTS_PER_MESSAGE):
                    last = await client.send_ink(
                        stroke_index, stroke[start : start + POINTS_PER_MESSAGE],
                        drawn.width, drawn.height, drawn.line_width,
                    )
                    # The page sends a message every 50 ms; ten times as fast keeps the run
                    # short, and the server still answers each number's last message (the
                    # ones between may be skipped: latest wins).
                    await asyncio.sleep(0.005)
            answer = await client.wait_for(last)
            texts.append("" if answer.number is None else answer.number.text)
    return texts
