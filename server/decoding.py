"""Decoding and preprocessing of pictures, run in processes of their own.

Owns the step from what a client sent (image bytes, a data URL or base64 text, or strokes) to
the 28x28 model input, and the pool of decode processes that runs it:
- `prepare` decodes one picture and raises `ImageError`; given a `SplitRequest` it splits the
  picture into pieces instead (`model/numbers.py`) and prepares every group of neighbouring
  pieces that may be one digit, the second pass of a drawing the model rejected as one digit;
- `prepare_many` decodes a chunk of pictures in a decode process and returns only plain,
  picklable values (`Decoded`): an exception with its own `__init__` does not unpickle;
- `start_decode_pool` starts the processes (`spawn`: TensorFlow's threads do not survive a
  fork) and warms them up, so that the first picture pays no imports.

Decoding runs outside the server process because Pillow and NumPy hold the GIL for much of
a picture, which would starve the event loop. This module must never import TensorFlow: each
decode process imports it, and TensorFlow would cost every one of them seconds and hundreds
of megabytes.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import wait
from typing import Literal

import numpy as np
from PIL import Image

from model.numbers import (
    Box,
    Candidate,
    Piece,
    candidates,
    ink_piece_count,
    ink_pieces,
    may_hold_several,
    picture_pieces,
)
from model.preprocess import FloatArray, InkCut, to_model_input_and_box
from model.strokes import (
    Indices,
    Points,
    drawings_to_model_inputs,
    ink_box,
    points_to_model_input,
)
from server.images import ImageError, decode_text, open_image
from server.ink import PackedInk
from server.predictions import input_png
from server.protocol import StrokesSnapshot

logger = logging.getLogger(__name__)

# What can be decoded into a picture: image bytes, a data URL or base64 text, or strokes.
Picture = bytes | str | StrokesSnapshot | PackedInk
# A drawing of more pieces than this is not split: it reads as one `?`. Twenty pieces are ten
# digits of two strokes each; the groups to score grow as four times the pieces.
MAX_SPLIT_PIECES = 20
# How long each start-up task holds its process, so that the tasks spread over all of them.
PAUSE_S = 0.01
WARM_UP = StrokesSnapshot(0, 28, 28, 3.0, (((14.0, 4.0), (14.0, 24.0)),))


@dataclass(frozen=True)
class DecodeLimits:
    """The limits decoding enforces: bytes of an encoded picture, pixels of a decoded one."""

    max_bytes: int
    max_pixels: int


# What identifies a group of a connection's strokes: the ink's generation and canvas, and
# each stroke's index and length (`PackedInk.generation` makes that enough).
GroupKey = tuple[int, int, int, float, tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class SplitRequest:
    """Ask for a picture's pieces and groups (the second pass) rather than its whole input.

    Groups of ink whose key is in `known` are listed without being drawn: the connection
    already has their reading from an earlier split of the same, growing drawing. A picture
    comes as the ink its first pass cut out (`Prepared.ink`), so it is not read twice.
    With `whole`, ink is also prepared whole in the same pass (its model input, box and
    pieces beside the split): a drawing already split is most likely still a number.
    """

    picture: Picture | InkCut
    known: frozenset[GroupKey] = frozenset()
    whole: bool = False


@dataclass(frozen=True)
class Split:
    """A picture cut into pieces, and every group of neighbouring pieces with its input.

    No groups when it has more than MAX_SPLIT_PIECES pieces. Pieces carry their boxes (as
    drawn and upright) and, for ink, their strokes and joins: all the search needs of them.
    For ink, `keys` holds each group's key; a group the request knew has no model input.
    """

    pieces: tuple[Piece, ...]
    groups: tuple[Candidate, ...]
    keys: tuple[GroupKey, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """A decoded picture: the model input (None when it has no ink) and, if asked, its PNG.

    `box` is where its ink lies, in the picture's (or canvas's) pixels; `pieces` how many
    strokes it has, for ink; for a picture 1 when it is surely one piece, else None (its
    pieces are found only if it is split, from its cut-out `ink`).
    A `SplitRequest` is prepared as a `split` and no model input, or with `whole` as both
    (the model input then may be one of the split's groups': `whole_group`).
    """

    model_input: FloatArray | None
    input_png: str | None
    box: Box | None = None
    pieces: int | None = None
    split: Split | None = None
    ink: InkCut | None = None
    # Ink prepared whole and split in one pass: the index of the split's group that is the
    # whole drawing, when there is one; `model_input` is then that group's input.
    whole_group: int | None = None


@dataclass(frozen=True)
class Decoded:
    """What a decode process hands back for one picture: a `Prepared` or an error."""

    prepared: Prepared | None
    # `ImageError`'s code and message when the picture was refused.
    error: tuple[Literal["bad_image", "too_large"], str] | None
    seconds: float


def prepare(
    picture: Picture | SplitRequest, limits: DecodeLimits, include_input: bool
) -> Prepared:
    """Decode and preprocess one picture, or split it; raises ImageError."""
    preprocess: Callable[[], Prepared]
    target = picture.picture if isinstance(picture, SplitRequest) else picture
    if isinstance(target, InkCut):
        described = f"a {target.ink.shape[1]}x{target.ink.shape[0]} cut of a picture's ink"
        preprocess = partial(_split_image, target)
    elif isinstance(target, PackedInk | StrokesSnapshot):
        # Ink is drawn straight into the model input: it never becomes a canvas-sized picture.
        points, starts = _points(target)
        described = f"{len(starts)} strokes on a {target.width}x{target.height} canvas"
        if isinstance(picture, SplitRequest):
            strokes = np.split(points, starts[1:]) if len(points) else []
            preprocess = partial(_split_ink, strokes, target, picture.known)
            if picture.whole:
                preprocess = partial(
                    _whole_and_split, partial(_prepare_ink, points, starts, target, include_input),
                    partial(_split_ink, strokes, target, picture.known, (points, starts)),
                    partial(_whole_as_group, points, starts, target, include_input),
                )
        else:
            preprocess = partial(_prepare_ink, points, starts, target, include_input)
    else:
        data = target if isinstance(target, bytes) else decode_text(target, limits.max_bytes)
        image = open_image(data, limits.max_pixels)
        described = f"a {image.width}x{image.height} {image.mode} picture"
        if isinstance(picture, SplitRequest):
            preprocess = partial(_split_image, to_model_input_and_box(image)[3])
        else:
            preprocess = partial(_prepare_image, image, include_input)
    try:
        return preprocess()
    except Exception:
        # A picture that decoded yet breaks preprocessing is a bug worth a traceback, but it
        # is still only this client's picture: it gets an error, the server carries on.
        logger.exception("preprocessing failed for %s", described)
        raise ImageError("bad_image", "the picture could not be processed") from None


def _prepare_image(image: Image.Image, include_input: bool) -> Prepared:
    model_input, box, kept, cut = to_model_input_and_box(image)
    png = input_png(model_input) if include_input else None
    if not may_hold_several(kept):
        return Prepared(model_input, png, box, pieces=1)
    # Unknown until split: its pieces are found from the ink cut out here, if it is split.
    return Prepared(model_input, png, box, pieces=None, ink=cut)


def _prepare_ink(
    points: Points, starts: Indices, ink: PackedInk | StrokesSnapshot, include_input: bool,
    pieces: int | None = None,
) -> Prepared:
    model_input = points_to_model_input(points, starts, ink.width, ink.height, ink.line_width)
    if model_input is None:
        return Prepared(None, input_png(None) if include_input else None)
    return _inked(model_input, points, starts, ink, include_input, pieces)


def _inked(
    model_input: FloatArray, points: Points, starts: Indices, ink: PackedInk | StrokesSnapshot,
    include_input: bool, pieces: int | None = None,
) -> Prepared:
    """Ink with ink on the canvas prepared whole from its model input: PNG, box, and its
    pieces (counted unless known)."""
    png = input_png(model_input) if include_input else None
    box = ink_box(points, ink.width, ink.height, ink.line_width)
    if pieces is None:
        pieces = ink_piece_count(np.split(points, starts[1:]), ink.line_width)
    return Prepared(model_input, png, box, pieces)


def _whole_and_split(
    whole: Callable[[int], Prepared], split: Callable[[], Prepared],
    as_group: Callable[[Split, Prepared], Prepared | None],
) -> Prepared:
    """The whole drawing prepared, with its split beside it (none when it has no ink).

    The whole drawing is drawn in the split's pass, with its groups (`_split_ink`), or
    taken from the group of every piece when that holds every stroke
    (`Prepared.whole_group`); only a split that drew no group draws it apart.
    """
    prepared = split()
    pieces = prepared.split
    assert pieces is not None
    as_one = as_group(pieces, prepared)
    if as_one is not None:
        return as_one
    prepared = whole(len(pieces.pieces))
    if prepared.model_input is None:
        return prepared
    return dataclasses.replace(prepared, split=pieces)


def _whole_as_group(
    points: Points, starts: Indices, ink: PackedInk | StrokesSnapshot, include_input: bool,
    split: Split, drawn: Prepared,
) -> Prepared | None:
    """The whole drawing prepared from what its split's pass drew: the group of every piece
    when that holds every stroke, else the whole drawing drawn beside the groups
    (`drawn.model_input`); None when that pass drew neither."""
    whole_group = None
    model_input = drawn.model_input
    if sum(len(piece.strokes) for piece in split.pieces) == len(starts):
        for index, group in enumerate(split.groups):
            if group.first == 0 and group.last == len(split.pieces) - 1:
                if group.model_input is not None:
                    whole_group, model_input = index, group.model_input
                break
    if model_input is None:
        return None
    whole = _inked(model_input, points, starts, ink, include_input, len(split.pieces))
    return dataclasses.replace(whole, split=split, whole_group=whole_group)


def _split_ink(
    strokes: list[Points], ink: PackedInk | StrokesSnapshot, known: frozenset[GroupKey],
    whole: tuple[Points, Indices] | None = None,
) -> Prepared:
    """Ink's pieces and groups. Given the `whole` drawing (its points and stroke starts), it
    is drawn with the groups, unless one of them is every stroke or none is drawn, and comes
    back as the model input."""
    pieces = ink_pieces(strokes, ink.line_width)
    if len(pieces) > MAX_SPLIT_PIECES:
        return Prepared(None, None, split=Split(_without_pixels(pieces), ()))
    generation = ink.generation if isinstance(ink, PackedInk) else -1

    def key(group: Sequence[Piece]) -> GroupKey:
        chosen = sorted(index for piece in group for index in piece.strokes)
        lengths = tuple((index, len(strokes[index])) for index in chosen)
        return (generation, ink.width, ink.height, ink.line_width, lengths)

    drawn_whole: list[FloatArray | None] = []

    def draw(drawings: list[tuple[Points, Indices]]) -> list[FloatArray | None]:
        canvas = (ink.width, ink.height, ink.line_width)
        if whole is None or any(len(points) == len(whole[0]) for points, _ in drawings):
            return drawings_to_model_inputs(drawings, *canvas)
        *inputs, whole_input = drawings_to_model_inputs([*drawings, whole], *canvas)
        drawn_whole.append(whole_input)
        return inputs

    groups = candidates(
        pieces,
        strokes,
        canvas=(ink.width, ink.height, ink.line_width),
        known=(lambda group: key(group) in known) if known else None,
        draw=draw,
    )
    keys = tuple(key(pieces[group.first : group.last + 1]) for group in groups)
    split = Split(_without_pixels(pieces), tuple(groups), keys)
    return Prepared(drawn_whole[0] if drawn_whole else None, None, split=split)


def _split_image(cut: InkCut) -> Prepared:
    pieces = picture_pieces(cut.ink)
    groups: list[Candidate] = []
    if len(pieces) <= MAX_SPLIT_PIECES:
        groups = [
            dataclasses.replace(group, box=_placed(group.box, cut))
            for group in candidates(pieces, ink=cut.ink)
        ]
    # Upright boxes move with the others: the shift is the same for every piece, and the
    # search compares them only with each other.
    boxes = tuple(
        Piece(
            _placed(piece.box, cut),
            upright=None if piece.upright is None else _placed(piece.upright, cut),
        )
        for piece in pieces
    )
    return Prepared(None, None, split=Split(boxes, tuple(groups)))


def _without_pixels(pieces: Sequence[Piece]) -> tuple[Piece, ...]:
    """The pieces without their pixels: the search needs only their boxes, and for ink which
    strokes they are and which they join."""
    return tuple(Piece(piece.box, piece.strokes, upright=piece.upright, joins=piece.joins)
                 for piece in pieces)


def _placed(box: Box, cut: InkCut) -> Box:
    """A box in a cut's ink, in the picture's own pixels: moved to where the cut lies in
    the ink map, and scaled up where a large picture was reduced before its ink was read."""
    (left, top), (scale_x, scale_y) = cut.origin, cut.scale
    return (
        (box[0] + left) * scale_x,
        (box[1] + top) * scale_y,
        (box[2] + left) * scale_x,
        (box[3] + top) * scale_y,
    )


def _points(ink: PackedInk | StrokesSnapshot) -> tuple[Points, Indices]:
    """Every point as one (N, 2) float64 array, and where each stroke with points starts."""
    if isinstance(ink, PackedInk):
        return unpack_points(ink)
    strokes = [stroke for stroke in ink.strokes if stroke]
    lengths = np.fromiter((len(stroke) for stroke in strokes), dtype=np.intp, count=len(strokes))
    if not strokes:
        return np.zeros((0, 2)), lengths
    points = np.concatenate([np.asarray(stroke, dtype=np.float64) for stroke in strokes])
    return points, np.cumsum(lengths) - lengths


def unpack_points(ink: PackedInk) -> tuple[Points, Indices]:
    """A packed drawing's points as one (N, 2) float64 array, and where each stroke starts."""
    points = np.frombuffer(ink.points, dtype=np.float32).astype(np.float64).reshape(-1, 2)
    lengths = np.asarray([length for length in ink.lengths if length], dtype=np.intp)
    return points, np.cumsum(lengths) - lengths


def prepare_many(
    pictures: Sequence[tuple[Picture | SplitRequest, bool]], limits: DecodeLimits
) -> list[Decoded]:
    """Decode a chunk of (picture, include_input) pairs; one `Decoded` each, in order."""
    results = []
    for picture, include_input in pictures:
        started = time.perf_counter()
        try:
            prepared = prepare(picture, limits, include_input)
        except ImageError as error:
            results.append(
                Decoded(None, (error.code, error.message), time.perf_counter() - started)
            )
        else:
            results.append(Decoded(prepared, None, time.perf_counter() - started))
    return results


def start_decode_pool(processes: int) -> Executor:
    """Start `processes` decode processes (0: one thread of this process instead), warmed up."""
    if processes == 0:
        pool: Executor = ThreadPoolExecutor(1, "decode")
        pool.submit(_warm_up).result()
        return pool
    pool = ProcessPoolExecutor(
        processes, multiprocessing.get_context("spawn"), initializer=_start_decode_process
    )
    # A spawned pool starts a process per task while none is idle, and a process takes
    # tasks only once its initializer has warmed it up: the pool is ready when every
    # process has answered.
    answered: set[int] = set()
    while len(answered) < processes:
        tasks = [pool.submit(_process_id, PAUSE_S) for _ in range(processes)]
        answered.update(task.result() for task in tasks)
    return pool


def _start_decode_process() -> None:
    """Set up a decode process: no signals, end with the parent, warm up."""
    # Ctrl+C and a SIGTERM to the whole process group (as systemd sends) are for the server,
    # which drains first and then stops its decode processes itself; a decode process
    # killed by them would fail the snapshots still pending.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    _warm_up()


def _process_id(pause_s: float) -> int:
    """This process's id, after a pause that leaves the next task to another process."""
    time.sleep(pause_s)
    return os.getpid()


def _exit_with(parent_sentinel: int) -> None:
    """Exit once the parent process has gone, even if it was killed without a word."""
    wait([parent_sentinel])
    os._exit(0)


def _warm_up() -> None:
    """Decode one picture, so that the lazy imports of Pillow and SciPy are paid now."""
    prepare(WARM_UP, DecodeLimits(1024, 1024 * 1024), include_input=True)
