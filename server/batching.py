"""The one inference worker every connection and upload shares.

`answer()` only registers a request and wakes the worker; two stages then run it, so that the
event loop never decodes or runs the model itself:
- decode: whenever one of the decode processes (`server/decoding.py`, outside this process's
  GIL) is free, it gets the oldest waiting requests, a few at a time, and only then is each
  request's `take()` called: a WebSocket session hands over its newest snapshot at that
  moment, so a burst of fifty costs one decode, not fifty, and a picture once taken waits
  for no more than a few others. Each connection has at most one request waiting, so the
  queue is a round-robin over connections. Requests are scheduled by their estimated cost
  (`server/costs.py`): cheap ones share a chunk of bounded work, and an expensive one (a
  huge picture, a drawing at the point limit) decodes alone in a lane that never holds
  every decode process, so one client's costly picture never holds up others' cheap ones;
- model: everything decoded meanwhile, up to `max_batch_size`, goes through one compiled
  model call in a single dedicated thread, which waits at most `batch_wait_ms` for chunks
  still decoding (as Triton's and TF Serving's dynamic batching do), while the decode
  processes already work on the next pictures.

A drawing is read whole first. Only when the model rejects it as one digit (a number, a
letter) and it has more than one piece does it go round once more: a second request, first
in the queue, splits it into pieces in a decode process and the model scores every group of
neighbouring pieces, for `model/numbers.py` to find the best reading. A single digit, the
common case, costs exactly what it did before numbers. A connection keeps the model's rows
for the groups of its last split (`Readings`): as a number grows, only the groups that hold
the stroke being drawn are drawn and scored again.

A decode process that dies breaks the whole pool: it is replaced exactly once, however many
chunks were in flight, and each of those chunks is tried once more on the new pool; if that
fails too, its requests fail with `DecodeError` (the protocol's `internal`), never with an
error that blames the picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from model.inference import Classifier
from model.numbers import (
    Box,
    is_one_digit,
    is_surely_one_digit,
    read_number,
    split_or_whole,
    whole_reading,
)
from model.preprocess import FloatArray
from server.config import Settings
from server.costs import split_cost_ms
from server.decoding import (
    Decoded,
    DecodeLimits,
    GroupKey,
    Picture,
    Prepared,
    Split,
    SplitRequest,
    prepare_many,
    start_decode_pool,
)
from server.images import ImageError
from server.ink import PackedInk
from server.metrics import Metrics
from server.predictions import Prediction, make_prediction
from server.protocol import StrokesSnapshot

__all__ = ["DecodeError", "InferenceWorker", "Picture"]

logger = logging.getLogger(__name__)

# Most pictures one decode process takes at a time. Small, because a picture waits for the
# others of its chunk once taken; a few, so that the round trip to the process is shared.
# Measured with 64 drawers on two cores: 8 gave p99 updates of ~100 ms at ~640 answers/s,
# 4 gave ~90 ms at ~510/s, and whole batches of 64 split over the processes ~135 ms.
DECODE_CHUNK_SIZE = 16
# Chunks given to each decode process at a time: the second waits in its pipe while the
# first decodes, so a process never idles while a result travels back through the loop.
CHUNKS_PER_PROCESS = 2
# A chunk of at most this much estimated work, when nothing else waits or decodes, is drawn
# in the model's thread instead: a round trip to a decode process costs ~1.5 ms, more than
# drawing a digit's ink (~0.3 ms), and a lone drawer's answer is that much sooner.
IN_PROCESS_MS = 1.5
# A request estimated to cost more than this (ms of one core) decodes alone, in the expensive
# lane; a page's picture costs ~3 ms, its ink well under 1 ms.
EXPENSIVE_MS = 20.0
# Most estimated work in one chunk of cheap requests, so that none waits long behind others.
CHUNK_MS = 15.0
# A picture's pieces are unknown until it is split: its split is charged as if it had these.
PICTURE_PIECES_GUESS = 3

class Readings(dict[GroupKey, NDArray[np.float32]]):
    """The model's rows for the groups of a connection's last split, by group; `several`:
    whether that split read as two or more characters (a number is being written)."""

    several: bool = False


class DecodeError(Exception):
    """The server failed to decode a valid request (a decode process died): `internal`."""


@dataclass(frozen=True)
class Whole:
    """What the first pass learnt of a drawing: the model's row for all of it, and where its
    ink lies. A second-pass request carries it to the answer."""

    row: NDArray[np.float32]
    box: Box
    input_png: str | None


@dataclass(frozen=True)
class Request:
    """A caller waiting for a prediction of the picture `take()` will hand over."""

    take: Callable[[], Picture | SplitRequest]
    # The estimated decode cost of what `take()` would hand over now, in ms.
    cost_ms: Callable[[], float]
    include_input: bool
    future: asyncio.Future[Prediction]
    # Charges the caller for work it causes beyond its estimate (a split), in ms.
    spend: Callable[[float], None] | None = None
    # The caller's rows of earlier splits (a connection's), kept up to date by splits.
    readings: Readings | None = None
    # Set on a second pass: the first pass's reading of the whole drawing.
    whole: Whole | None = None


@dataclass(frozen=True)
class Ready:
    """Decoded model inputs, waiting for the model: a whole picture with ink (one input), or
    the groups of a split one (`whole` set, one input per group)."""

    model_inputs: FloatArray
    request: Request
    picture: Picture | None = None
    prepared: Prepared | None = None
    # Estimated decode cost of the whole picture, in ms: a split is charged from it.
    decode_ms: float = 0.0


class InferenceWorker:
    """Decode processes, model thread and the two loops that feed them."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.classifier: Classifier | None = None
        self._limits = DecodeLimits(settings.max_message_bytes, settings.max_pixels)
        self._decode_pool: Executor | None = None
        self._model_thread = ThreadPoolExecutor(1, "model")
        self._waiting: deque[Request] = deque()
        self._ready: deque[Ready] = deque()
        # Set when a request arrives or a chunk finishes: the decode loop looks again.
        self._wake = asyncio.Event()
        self._input_decoded = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._decodes: set[asyncio.Task[None]] = set()
        # Chunks being decoded: the model waits `batch_wait_ms` for them only while any are.
        self._decoding = 0
        self._expensive_decoding = 0
        # The replacement of a broken decode pool, while it starts.
        self._restarting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load and warm up the model and the decode processes, then start the loops."""
        loop = asyncio.get_running_loop()
        classifier, decode_pool = await asyncio.gather(
            loop.run_in_executor(self._model_thread, self._load),
            asyncio.to_thread(start_decode_pool, self.settings.decode_processes),
            return_exceptions=True,
        )
        if isinstance(decode_pool, Executor):
            # Kept even when the model failed, so that `stop()` ends the decode processes.
            self._decode_pool = decode_pool
        if isinstance(classifier, BaseException):
            raise classifier
        if isinstance(decode_pool, BaseException):
            raise decode_pool
        self.classifier = classifier
        self._loops = [
            asyncio.create_task(self._run_decoding()),
            asyncio.create_task(self._run_model(classifier)),
        ]

    @property
    def not_digit_threshold(self) -> float:
        """The loaded model's rejection threshold, from its metrics.json."""
        if self.classifier is None:
            raise RuntimeError("the model is not loaded yet")
        return self.classifier.info.not_digit_threshold

    def _load(self) -> Classifier:
        classifier = Classifier(self.settings.model_path, threads=self.settings.model_threads)
        classifier.warm_up(batch_sizes=(1, 8, self.settings.max_batch_size))
        return classifier

    async def stop(self) -> None:
        """Stop the loops, cancel what is still waiting, and end the decode processes."""
        tasks = [*self._loops, *self._decodes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for request in self._waiting:
            request.future.cancel()
        for ready in self._ready:
            ready.request.future.cancel()
        self._waiting.clear()
        self._ready.clear()
        if self._decode_pool is not None:
            # Waits for at most the chunks in progress (milliseconds), so that no decode
            # process outlives the server.
            await asyncio.to_thread(self._decode_pool.shutdown, wait=True, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    async def answer(
        self,
        take: Callable[[], Picture],
        include_input: bool,
        cost_ms: Callable[[], float] = lambda: 0.0,
        spend: Callable[[float], None] | None = None,
        readings: Readings | None = None,
    ) -> Prediction:
        """Predict the picture `take()` returns once its decode starts.

        `spend` is charged with the estimated cost of splitting it, if it is split, and
        `readings` (one connection's) spare a split the groups it already scored. Raises
        ImageError for a picture refused, DecodeError when the server failed.
        """
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._waiting.append(Request(take, cost_ms, include_input, future, spend, readings))
        self._wake.set()
        return await future

    async def _run_decoding(self) -> None:
        """Forever: whenever a decode process is free, give it the next chunk of requests."""
        processes = max(1, self.settings.decode_processes)
        free = asyncio.Semaphore(processes * CHUNKS_PER_PROCESS)
        while True:
            await free.acquire()
            while True:
                requests, expensive, work_ms = self._next_chunk(processes)
                if requests:
                    break
                # Nothing waits, or only expensive requests whose lane is full.
                self._wake.clear()
                await self._wake.wait()
            self.metrics.waiting_requests.set(len(self._waiting))
            self._decoding += 1
            self._expensive_decoding += expensive
            alone = not self._waiting and self._decoding == 1 and work_ms <= IN_PROCESS_MS
            decoding = asyncio.create_task(self._decode(requests, in_process=alone))
            self._decodes.add(decoding)
            decoding.add_done_callback(self._decodes.discard)

            def finished(_: object, expensive: bool = expensive) -> None:
                self._decoding -= 1
                self._expensive_decoding -= expensive
                free.release()
                self._wake.set()
                self._input_decoded.set()

            decoding.add_done_callback(finished)

    def _next_chunk(self, processes: int) -> tuple[list[Request], bool, float]:
        """The next requests to decode together, whether they are one expensive one, and
        their estimated work in ms.

        Cheap requests are taken in order, a few at a time and at most `CHUNK_MS` of work;
        an expensive one goes alone, and only while another decode process stays free for
        cheap ones (with a single process, only when it is the oldest request).
        """
        # Shared fairly among the processes, and small: a picture is taken only when its
        # decode starts, and waits for no more than a few others once taken.
        share = -(-len(self._waiting) // processes)
        limit = max(1, min(DECODE_CHUNK_SIZE, share, self.settings.max_batch_size))
        lane_free = self._expensive_decoding < max(1, processes - 1)
        chunk: list[Request] = []
        skipped: list[Request] = []
        work_ms = 0.0
        while self._waiting and len(chunk) < limit:
            request = self._waiting.popleft()
            if request.future.done():
                continue
            cost = request.cost_ms()
            if cost > EXPENSIVE_MS:
                if not chunk and lane_free and (processes > 1 or not skipped):
                    self._waiting.extendleft(reversed(skipped))
                    return [request], True, cost
                skipped.append(request)
                continue
            if chunk and work_ms + cost > CHUNK_MS:
                self._waiting.appendleft(request)
                break
            chunk.append(request)
            work_ms += cost
        self._waiting.extendleft(reversed(skipped))
        return chunk, False, work_ms

    async def _decode(self, requests: list[Request], in_process: bool) -> None:
        """Decode one chunk of pictures in a decode process and pass the results on."""
        try:
            await self._decode_chunk(requests, in_process)
        except Exception as error:
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(error)

    async def _decode_chunk(self, requests: list[Request], in_process: bool) -> None:
        """Take each request's picture now, decode them together, answer or queue each."""
        pictures: list[tuple[Picture | SplitRequest, bool]] = []
        taken: list[tuple[Request, float]] = []
        for request in requests:
            try:
                cost = request.cost_ms()
                pictures.append((_with_split(request.take(), request.readings),
                                 request.include_input))
            except Exception as error:
                request.future.set_exception(error)
            else:
                taken.append((request, cost))
        if not pictures:
            return
        if in_process:
            loop = asyncio.get_running_loop()
            decoded = await loop.run_in_executor(
                self._model_thread, prepare_many, pictures, self._limits
            )
        else:
            decoded = await self._decode_in_pool(pictures)
        for (request, cost), (picture, _), outcome in zip(taken, pictures, decoded, strict=True):
            self._finish_decoding(request, picture, cost, outcome)

    async def _decode_in_pool(
        self, pictures: list[tuple[Picture | SplitRequest, bool]]
    ) -> list[Decoded]:
        """Decode in a decode process; once more on a fresh pool if a process died."""
        loop = asyncio.get_running_loop()
        for _ in range(2):
            if self._restarting is not None:
                await asyncio.shield(self._restarting)
            pool = self._decode_pool
            assert pool is not None
            try:
                return await loop.run_in_executor(pool, prepare_many, pictures, self._limits)
            except BrokenProcessPool:
                await self._replace_pool(pool)
            except RuntimeError:
                # Submitted just as the broken pool was shut down for its replacement.
                if self._restarting is None and pool is self._decode_pool:
                    raise
        raise DecodeError("the server failed to process this message; send it again")

    async def _replace_pool(self, broken: Executor) -> None:
        """Replace a broken decode pool, once however many chunks saw it break."""
        if self._decode_pool is broken and self._restarting is None:
            self._restarting = asyncio.create_task(self._restart(broken))
        if self._restarting is not None:
            try:
                await asyncio.shield(self._restarting)
            except Exception as error:
                raise DecodeError("the server's decode processes failed to restart") from error

    async def _restart(self, broken: Executor) -> None:
        # A decode process died (killed, out of memory, or crashed on a picture).
        logger.error("a decode process died; restarting the decode processes")
        self.metrics.decode_restarts.inc()
        try:
            # The pool ends its other processes with SIGTERM, which decode processes ignore
            # (it is for the server, which drains first): kill them, or each death would
            # leave one behind until the server exits.
            for process in getattr(broken, "_processes", {}).values():
                if process.is_alive():
                    process.kill()
            broken.shutdown(wait=False, cancel_futures=True)
            self._decode_pool = await asyncio.to_thread(
                start_decode_pool, self.settings.decode_processes
            )
        finally:
            self._restarting = None

    def _finish_decoding(
        self, request: Request, picture: Picture | SplitRequest, cost_ms: float, outcome: Decoded
    ) -> None:
        """Answer an error or a picture without ink at once; queue the others for the model."""
        self.metrics.decode_seconds.observe(outcome.seconds)
        if request.future.done():
            return
        if outcome.error is not None:
            request.future.set_exception(ImageError(*outcome.error))
            return
        prepared: Prepared | None = outcome.prepared
        assert prepared is not None
        if prepared.split is not None and prepared.model_input is not None:
            # Whole and split in one pass: the whole drawing's input, then the new groups'.
            assert isinstance(picture, SplitRequest) and isinstance(picture.picture, PackedInk)
            if request.spend is not None:
                request.spend(max(0.0, outcome.seconds * 1000.0 - cost_ms))
            new = self._new_groups(prepared.split)
            if prepared.whole_group is None:
                new.insert(0, prepared.model_input)
            self._ready.append(Ready(np.stack(new), request, picture.picture, prepared,
                                     decode_ms=cost_ms))
            return
        if prepared.split is not None:
            assert request.whole is not None
            if request.spend is not None:
                # The connection pays what its split took, measured in the decode process.
                request.spend(outcome.seconds * 1000.0)
            if not prepared.split.groups:
                # Too many pieces to split, or none left after the specks: one `?`.
                request.future.set_result(self._whole_prediction(request.whole))
                return
            new = self._new_groups(prepared.split)
            if not new:
                # Every group was scored before: nothing for the model to do.
                self._read(Ready(np.zeros((0, 28, 28), np.float32), request, prepared=prepared),
                           np.zeros((0, 11), np.float32))
                return
            self._ready.append(Ready(np.stack(new), request, prepared=prepared))
            return
        if prepared.model_input is None:
            request.future.set_result(make_prediction(None, input_png=prepared.input_png))
            return
        assert not isinstance(picture, SplitRequest)
        self._ready.append(
            Ready(prepared.model_input[None], request, picture, prepared, decode_ms=cost_ms)
        )

    def _new_groups(self, split: Split) -> list[FloatArray]:
        """The model inputs of a split's groups not read before, counted in the metrics."""
        new = [group.model_input for group in split.groups if group.model_input is not None]
        self.metrics.split_groups.labels("drawn").inc(len(new))
        self.metrics.split_groups.labels("kept").inc(len(split.groups) - len(new))
        return new

    async def _run_model(self, classifier: Classifier) -> None:
        """Forever: run one model call for everything decoded so far, hand out the rows."""
        loop = asyncio.get_running_loop()
        wait_s = self.settings.batch_wait_ms / 1000.0
        while True:
            while not self._ready:
                self._input_decoded.clear()
                await self._input_decoded.wait()
            deadline = loop.time() + wait_s
            while (
                len(self._ready) < self.settings.max_batch_size
                and self._decoding > 0
                and loop.time() < deadline
            ):
                # A chunk still decoding may join this model call.
                self._input_decoded.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - loop.time()):
                        await self._input_decoded.wait()
            batch: list[Ready] = []
            rows = 0
            while self._ready and (not batch or rows < self.settings.max_batch_size):
                ready = self._ready.popleft()
                if not ready.request.future.done():
                    batch.append(ready)
                    rows += len(ready.model_inputs)
            if not batch:
                continue
            inputs = np.concatenate([ready.model_inputs for ready in batch])
            started = loop.time()
            try:
                probabilities = await loop.run_in_executor(
                    self._model_thread, classifier.predict, inputs
                )
            except Exception as error:
                for ready in batch:
                    if not ready.request.future.done():
                        ready.request.future.set_exception(error)
                continue
            self.metrics.inference_seconds.observe(loop.time() - started)
            self.metrics.batch_size.observe(len(inputs))
            first = 0
            for ready in batch:
                count = len(ready.model_inputs)
                self._read(ready, probabilities[first : first + count])
                first += count

    def _read(self, ready: Ready, rows: NDArray[np.float32]) -> None:
        """Answer a whole picture or a split one from its rows, or send it to be split."""
        request = ready.request
        if request.future.done():
            return
        prepared = ready.prepared
        assert prepared is not None
        threshold = self.not_digit_threshold
        if request.whole is not None:
            assert prepared.split is not None
            rows = _all_rows(prepared.split, rows, request.readings)
            request.future.set_result(
                self._split_prediction(request.whole, prepared.split, rows, request.readings)
            )
            return
        assert prepared.box is not None and ready.picture is not None
        if prepared.split is not None:
            # Read whole and split in one pass: the split is the answer unless it is one digit.
            # The whole drawing's row comes first, or is its group's (`whole_group`).
            self.metrics.splits.labels("one").inc()
            if prepared.whole_group is None:
                whole = Whole(rows[0], prepared.box, prepared.input_png)
                rows = _all_rows(prepared.split, rows[1:], request.readings)
            else:
                rows = _all_rows(prepared.split, rows, request.readings)
                whole = Whole(rows[prepared.whole_group], prepared.box, prepared.input_png)
            if is_surely_one_digit(whole.row, threshold) or (prepared.pieces or 2) < 2:
                if request.readings is not None:
                    request.readings.several = False
                request.future.set_result(self._whole_prediction(whole))
            else:
                request.future.set_result(
                    self._split_prediction(whole, prepared.split, rows, request.readings)
                )
            return
        whole = Whole(rows[0], prepared.box, prepared.input_png)
        # Ink of several strokes is split unless surely one digit (two digits that touch may
        # read as one, not quite rejected); a picture only when rejected.
        ink = isinstance(ready.picture, PackedInk | StrokesSnapshot)
        one_digit = is_surely_one_digit if ink else is_one_digit
        if one_digit(rows[0], threshold) or (prepared.pieces or 2) < 2:
            request.future.set_result(self._whole_prediction(whole))
            return
        # Not one digit, and more than one piece: split it, ahead of every waiting request.
        # A picture is split from the ink its first pass cut out, ink from its strokes.
        picture = ready.picture if prepared.ink is None else prepared.ink
        readings = request.readings if isinstance(picture, PackedInk) else None
        known = frozenset(readings) if readings else frozenset()
        cost_ms = split_cost_ms(ready.decode_ms, prepared.pieces or PICTURE_PIECES_GUESS)
        self._waiting.appendleft(
            Request(
                lambda: SplitRequest(picture, known),
                lambda: cost_ms,
                include_input=False,
                future=request.future,
                spend=request.spend,
                readings=readings,
                whole=whole,
            )
        )
        self.metrics.splits.labels("two").inc()
        self._wake.set()

    def _whole_prediction(self, whole: Whole) -> Prediction:
        """The answer when the whole drawing is the reading: one digit, or one `?`."""
        threshold = self.not_digit_threshold
        number = whole_reading(whole.row, whole.box, threshold)
        return make_prediction(whole.row, threshold, number, whole.input_png)

    def _split_prediction(
        self, whole: Whole, split: Split, rows: NDArray[np.float32], readings: Readings | None
    ) -> Prediction:
        """The answer for a drawing read group by group: the best grouping's number. The
        connection's `readings` learn whether it read as several characters."""
        threshold = self.not_digit_threshold
        number = split_or_whole(read_number(split.pieces, split.groups, rows, threshold),
                                whole.row, whole.box, threshold)
        if readings is not None:
            readings.several = len(number.digits) > 1
        return make_prediction(whole.row, threshold, number, whole.input_png)


def _with_split(
    picture: Picture | SplitRequest, readings: Readings | None
) -> Picture | SplitRequest:
    """Ink whose last split read as several characters, in the same generation and canvas,
    is read whole and split in one pass: while a number is written, every update is one. A
    digit drawn in two strokes, split once while half drawn, is not. Readings of an earlier
    generation are dropped."""
    if not isinstance(picture, PackedInk) or not readings or not readings.several:
        return picture
    generation, width, height, line_width, _ = next(iter(readings))
    if (generation, width, height, line_width) != (
        picture.generation, picture.width, picture.height, picture.line_width
    ):
        readings.clear()
        readings.several = False
        return picture
    return SplitRequest(picture, frozenset(readings), whole=True)


def _all_rows(
    split: Split, new_rows: NDArray[np.float32], readings: Readings | None
) -> NDArray[np.float32]:
    """A row for every group of a split: the model's for those it drew, the kept ones for
    those it knew; the connection then keeps exactly this split's rows."""
    rows = []
    fresh = iter(new_rows)
    for index, group in enumerate(split.groups):
        if group.model_input is None:
            assert readings is not None
            rows.append(readings[split.keys[index]])
        else:
            rows.append(next(fresh))
    if readings is not None and split.keys:
        readings.clear()
        readings.update(zip(split.keys, rows, strict=True))
    return np.stack(rows)
