"""The in-process ceiling: decode, preprocess and batched model in one process, no network."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.inference import Classifier
from model.preprocess import to_model_input

BATCH_SIZE = 64


def _prepare(snapshot: bytes) -> NDArray[np.float32]:
    """Decode and preprocess one snapshot (blank becomes zeros)."""
    model_input = to_model_input(Image.open(io.BytesIO(snapshot)))
    return np.zeros((28, 28), np.float32) if model_input is None else model_input


def ceiling(snapshots: list[bytes], duration_s: float, threads: int = 2) -> float:
    """Predictions per second with a thread pool preparing batches of 64 for the model."""
    classifier = Classifier()
    classifier.warm_up()
    done = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        while time.perf_counter() - started < duration_s:
            batch = [snapshots[(done + index) % len(snapshots)] for index in range(BATCH_SIZE)]
            classifier.predict(np.stack(list(pool.map(_prepare, batch))))
            done += BATCH_SIZE
    return done / (time.perf_counter() - started)
