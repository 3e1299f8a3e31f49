"""The one inference worker every connection and upload shares.

Two stages, so that the event loop never decodes or runs the model itself:
- decode: pictures become 28x28 model inputs in a small thread pool. A caller takes its
  picture only once a decode slot is free, so a WebSocket session hands over its newest
  snapshot at that moment and a burst of fifty costs one decode, not fifty;
- model: one task gathers the decoded inputs, waits at most `batch_wait_ms` for more (as
  Triton's and TF Serving's dynamic batching do) and runs one compiled model call for up to
  `max_batch_size` of them in a single dedicated thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.inference import Classifier
from model.preprocess import FloatArray, to_model_input
from server.config import Settings
from server.images import ImageError, decode_text, open_image
from server.metrics import Metrics
from server.predictions import Prediction, input_png, make_prediction
from server.protocol import StrokesSnapshot
from server.strokes import draw_strokes

logger = logging.getLogger(__name__)

# What can be decoded into a picture: image bytes, a data URL or base64 text, or strokes.
Picture = bytes | str | StrokesSnapshot


@dataclass(frozen=True)
class Prepared:
    """A decoded picture: the model input (None when it has no ink) and, if asked, its PNG."""

    model_input: FloatArray | None
    input_png: str | None


def prepare(picture: Picture, settings: Settings, include_input: bool) -> Prepared:
    """Decode and preprocess one picture (runs in the decode pool); raises ImageError."""
    image: Image.Image
    if isinstance(picture, StrokesSnapshot):
        image = draw_strokes(picture)
    else:
        data = picture if isinstance(picture, bytes) else decode_text(
            picture, settings.max_message_bytes
        )
        image = open_image(data, settings.max_pixels)
    try:
        model_input = to_model_input(image)
    except Exception:
        # A picture that decoded yet breaks preprocessing is a bug worth a traceback, but it
        # is still only this client's picture: it gets an error, the server carries on.
        logger.exception("preprocessing failed for a %sx%s %s picture", *image.size, image.mode)
        raise ImageError("bad_image", "the picture could not be processed") from None
    return Prepared(model_input, input_png(model_input) if include_input else None)


class InferenceWorker:
    """Decode pool, model thread and the batching loop between them."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.classifier: Classifier | None = None
        self._decode_pool = ThreadPoolExecutor(settings.decode_threads, "decode")
        self._model_thread = ThreadPoolExecutor(1, "model")
        self._decode_slots = asyncio.Semaphore(settings.decode_threads)
        self._decoding = 0
        self._queue: asyncio.Queue[tuple[FloatArray, asyncio.Future[NDArray[np.float32]]]] = (
            asyncio.Queue()
        )
        self._batches: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load and warm up the model and the decode path, then start batching."""
        loop = asyncio.get_running_loop()
        self.classifier = await loop.run_in_executor(self._model_thread, self._load)
        # The first decode pays for lazy imports in Pillow and SciPy; pay it now.
        warm_up = StrokesSnapshot(0, 28, 28, 3.0, (((14.0, 4.0), (14.0, 24.0)),))
        await loop.run_in_executor(self._decode_pool, prepare, warm_up, self.settings, True)
        self._batches = asyncio.create_task(self._run_batches(self.classifier))

    def _load(self) -> Classifier:
        classifier = Classifier(self.settings.model_path)
        classifier.warm_up(batch_sizes=(1, 8, self.settings.max_batch_size))
        return classifier

    async def stop(self) -> None:
        """Stop batching and release the threads."""
        if self._batches is not None:
            self._batches.cancel()
            await asyncio.gather(self._batches, return_exceptions=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    async def answer(self, take: Callable[[], Picture], include_input: bool) -> Prediction:
        """Predict the picture `take()` returns once a decode slot is free; raises ImageError."""
        loop = asyncio.get_running_loop()
        async with self._decode_slots:
            picture = take()
            started = time.perf_counter()
            self._decoding += 1
            try:
                prepared = await loop.run_in_executor(
                    self._decode_pool, prepare, picture, self.settings, include_input
                )
            finally:
                self._decoding -= 1
                self.metrics.decode_seconds.observe(time.perf_counter() - started)
        if prepared.model_input is None:
            return make_prediction(None, prepared.input_png)
        future: asyncio.Future[NDArray[np.float32]] = loop.create_future()
        self._queue.put_nowait((prepared.model_input, future))
        return make_prediction(await future, prepared.input_png)

    async def _run_batches(self, classifier: Classifier) -> None:
        """Forever: gather a batch of inputs, run one model call, hand out the rows."""
        loop = asyncio.get_running_loop()
        wait_s = self.settings.batch_wait_ms / 1000.0
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + wait_s
            while len(batch) < self.settings.max_batch_size:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                # Waiting only pays when a decode in progress may still join this batch.
                if remaining <= 0 or self._decoding == 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._queue.get())
                except TimeoutError:
                    break
            waiting = [(model_input, future) for model_input, future in batch if not future.done()]
            if not waiting:
                continue
            inputs = np.stack([model_input for model_input, _ in waiting])
            started = time.perf_counter()
            try:
                probabilities = await loop.run_in_executor(
                    self._model_thread, classifier.predict, inputs
                )
            except Exception as error:
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.metrics.inference_seconds.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(waiting))
            for (_, future), row in zip(waiting, probabilities, strict=True):
                if not future.done():
                    future.set_result(row)
