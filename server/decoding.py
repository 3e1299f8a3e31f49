"""Decoding and preprocessing of pictures, run in processes of their own.

Owns the step from what a client sent (image bytes, a data URL or base64 text, or strokes) to
the 28x28 model input, and the pool of decode processes that runs it:
- `prepare` decodes one picture and raises `ImageError`;
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

from model.preprocess import FloatArray, to_model_input
from model.strokes import Indices, Points, points_to_model_input, strokes_to_model_input
from server.images import ImageError, decode_text, open_image
from server.ink import PackedInk
from server.predictions import input_png
from server.protocol import StrokesSnapshot

logger = logging.getLogger(__name__)

# What can be decoded into a picture: image bytes, a data URL or base64 text, or strokes.
Picture = bytes | str | StrokesSnapshot | PackedInk
# How long each start-up task holds its process, so that the tasks spread over all of them.
PAUSE_S = 0.01
WARM_UP = StrokesSnapshot(0, 28, 28, 3.0, (((14.0, 4.0), (14.0, 24.0)),))


@dataclass(frozen=True)
class DecodeLimits:
    """The limits decoding enforces: bytes of an encoded picture, pixels of a decoded one."""

    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class Prepared:
    """A decoded picture: the model input (None when it has no ink) and, if asked, its PNG."""

    model_input: FloatArray | None
    input_png: str | None


@dataclass(frozen=True)
class Decoded:
    """What a decode process hands back for one picture: a `Prepared` or an error."""

    prepared: Prepared | None
    # `ImageError`'s code and message when the picture was refused.
    error: tuple[Literal["bad_image", "too_large"], str] | None
    seconds: float


def prepare(picture: Picture, limits: DecodeLimits, include_input: bool) -> Prepared:
    """Decode and preprocess one picture; raises ImageError."""
    preprocess: Callable[[], FloatArray | None]
    if isinstance(picture, PackedInk):
        described = f"{len(picture.lengths)} strokes on a {picture.width}x{picture.height} canvas"
        points, starts = unpack_points(picture)
        preprocess = partial(
            points_to_model_input,
            points,
            starts,
            picture.width,
            picture.height,
            picture.line_width,
        )
    elif isinstance(picture, StrokesSnapshot):
        # Ink is drawn straight into the model input: it never becomes a canvas-sized picture.
        described = f"{len(picture.strokes)} strokes on a {picture.width}x{picture.height} canvas"
        preprocess = partial(
            strokes_to_model_input,
            picture.strokes,
            picture.width,
            picture.height,
            picture.line_width,
        )
    else:
        data = picture if isinstance(picture, bytes) else decode_text(picture, limits.max_bytes)
        image = open_image(data, limits.max_pixels)
        described = f"a {image.width}x{image.height} {image.mode} picture"
        preprocess = partial(to_model_input, image)
    try:
        model_input = preprocess()
    except Exception:
        # A picture that decoded yet breaks preprocessing is a bug worth a traceback, but it
        # is still only this client's picture: it gets an error, the server carries on.
        logger.exception("preprocessing failed for %s", described)
        raise ImageError("bad_image", "the picture could not be processed") from None
    return Prepared(model_input, input_png(model_input) if include_input else None)


def unpack_points(ink: PackedInk) -> tuple[Points, Indices]:
    """A packed drawing's points as one (N, 2) float64 array, and where each stroke starts."""
    points = np.frombuffer(ink.points, dtype=np.float32).astype(np.float64).reshape(-1, 2)
    lengths = np.asarray([length for length in ink.lengths if length], dtype=np.intp)
    return points, np.cumsum(lengths) - lengths


def prepare_many(
    pictures: Sequence[tuple[Picture, bool]], limits: DecodeLimits
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
