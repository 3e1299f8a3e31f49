"""The one inference worker every connection and upload shares.

`answer()` only registers a request and wakes the worker; two stages then run it, so that the
event loop never decodes or runs the model itself:
- decode: whenever one of the decode processes (`server/decoding.py`, outside this process's
  GIL) is free, it gets the oldest waiting requests, a few at a time, and only then is each
  request's `take()` called: a WebSocket session hands over its newest snapshot at that
  moment, so a burst of fifty costs one decode, not fifty, and a picture once taken waits
  for no more than a few others;
- model: everything decoded meanwhile, up to `max_batch_size`, goes through one compiled
  model call in a single dedicated thread, which waits at most `batch_wait_ms` for chunks
  still decoding (as Triton's and TF Serving's dynamic batching do), while the decode
  processes already work on the next pictures.
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

from model.inference import Classifier
from model.preprocess import FloatArray
from server.config import Settings
from server.decoding import (
    Decoded,
    DecodeLimits,
    Picture,
    Prepared,
    prepare_many,
    start_decode_pool,
)
from server.images import ImageError
from server.metrics import Metrics
from server.predictions import Prediction, make_prediction

__all__ = ["InferenceWorker", "Picture"]

logger = logging.getLogger(__name__)

# Most pictures one decode process takes at a time. Small, because a picture waits for the
# others of its chunk once taken; a few, so that the round trip to the process is shared.
# Measured with 64 drawers on two cores: 8 gave p99 updates of ~100 ms at ~640 answers/s,
# 4 gave ~90 ms at ~510/s, and whole batches of 64 split over the processes ~135 ms.
DECODE_CHUNK_SIZE = 8


@dataclass(frozen=True)
class Request:
    """A caller waiting for a prediction of the picture `take()` will hand over."""

    take: Callable[[], Picture]
    include_input: bool
    future: asyncio.Future[Prediction]


@dataclass(frozen=True)
class Ready:
    """A decoded picture with ink, waiting for the model."""

    model_input: FloatArray
    input_png: str | None
    future: asyncio.Future[Prediction]


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
        self._request_arrived = asyncio.Event()
        self._input_decoded = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._decodes: set[asyncio.Task[None]] = set()
        # Chunks being decoded: the model waits `batch_wait_ms` for them only while any are.
        self._decoding = 0

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

    def _load(self) -> Classifier:
        classifier = Classifier(self.settings.model_path)
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
            ready.future.cancel()
        self._waiting.clear()
        self._ready.clear()
        if self._decode_pool is not None:
            # Waits for at most the chunks in progress (milliseconds), so that no decode
            # process outlives the server.
            await asyncio.to_thread(self._decode_pool.shutdown, wait=True, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    async def answer(self, take: Callable[[], Picture], include_input: bool) -> Prediction:
        """Predict the picture `take()` returns once its decode starts; raises ImageError."""
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._waiting.append(Request(take, include_input, future))
        self._request_arrived.set()
        return await future

    async def _run_decoding(self) -> None:
        """Forever: whenever a decode process is free, give it the oldest waiting requests."""
        processes = max(1, self.settings.decode_processes)
        free = asyncio.Semaphore(processes)
        while True:
            while not self._waiting:
                self._request_arrived.clear()
                await self._request_arrived.wait()
            await free.acquire()
            # Shared fairly among the free processes, and small: a picture is taken only
            # when its decode starts, and waits for no more than a few others once taken.
            share = -(-len(self._waiting) // processes)
            limit = max(1, min(DECODE_CHUNK_SIZE, share, self.settings.max_batch_size))
            requests: list[Request] = []
            while self._waiting and len(requests) < limit:
                request = self._waiting.popleft()
                if not request.future.done():
                    requests.append(request)
            if not requests:
                free.release()
                continue
            self._decoding += 1
            decoding = asyncio.create_task(self._decode(requests))
            self._decodes.add(decoding)
            decoding.add_done_callback(self._decodes.discard)
            decoding.add_done_callback(lambda _: free.release())

    async def _decode(self, requests: list[Request]) -> None:
        """Decode one chunk of pictures in a decode process and pass the results on."""
        try:
            await self._decode_chunk(requests)
        except Exception as error:
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(error)
        finally:
            self._decoding -= 1
            self._input_decoded.set()

    async def _decode_chunk(self, requests: list[Request]) -> None:
        """Take each request's picture now, decode them together, answer or queue each."""
        pictures: list[tuple[Picture, bool]] = []
        taken: list[Request] = []
        for request in requests:
            try:
                pictures.append((request.take(), request.include_input))
            except Exception as error:
                request.future.set_exception(error)
            else:
                taken.append(request)
        if not pictures:
            return
        pool = self._decode_pool
        assert pool is not None
        loop = asyncio.get_running_loop()
        try:
            decoded = await loop.run_in_executor(pool, prepare_many, pictures, self._limits)
        except BrokenProcessPool:
            # A decode process died (killed, or crashed on a picture): these pictures get an
            # error, and a fresh pool serves the next ones.
            for request in taken:
                if not request.future.done():
                    request.future.set_exception(
                        ImageError("bad_image", "the picture could not be processed")
                    )
            if self._decode_pool is pool:
                logger.error("a decode process died; restarting the decode processes")
                pool.shutdown(wait=False, cancel_futures=True)
                self._decode_pool = await asyncio.to_thread(
                    start_decode_pool, self.settings.decode_processes
                )
            return
        for request, outcome in zip(taken, decoded, strict=True):
            self._finish_decoding(request, outcome)

    def _finish_decoding(self, request: Request, outcome: Decoded) -> None:
        """Answer an error or a picture without ink at once; queue the others for the model."""
        self.metrics.decode_seconds.observe(outcome.seconds)
        if request.future.done():
            return
        if outcome.error is not None:
            request.future.set_exception(ImageError(*outcome.error))
            return
        prepared: Prepared | None = outcome.prepared
        assert prepared is not None
        if prepared.model_input is None:
            request.future.set_result(make_prediction(None, prepared.input_png))
            return
        self._ready.append(Ready(prepared.model_input, prepared.input_png, request.future))

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
            while self._ready and len(batch) < self.settings.max_batch_size:
                ready = self._ready.popleft()
                if not ready.future.done():
                    batch.append(ready)
            if not batch:
                continue
            inputs = np.stack([ready.model_input for ready in batch])
            started = loop.time()
            try:
                probabilities = await loop.run_in_executor(
                    self._model_thread, classifier.predict, inputs
                )
            except Exception as error:
                for ready in batch:
                    if not ready.future.done():
                        ready.future.set_exception(error)
                continue
            self.metrics.inference_seconds.observe(loop.time() - started)
            self.metrics.batch_size.observe(len(batch))
            for ready, row in zip(batch, probabilities, strict=True):
                if not ready.future.done():
                    ready.future.set_result(make_prediction(row, ready.input_png))
