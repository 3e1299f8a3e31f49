"""Load the trained model once and run batches of 28x28 inputs through a compiled call."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from model import METRICS_PATH, MODEL_PATH

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What clients are told about the model (`GET /api/model`)."""

    name: str
    version: str
    test_accuracy: float
    # A picture whose "not a digit" output reaches this is rejected (1.0: a model without
    # that output, which never rejects).
    not_digit_threshold: float = 1.0

    def as_json(self) -> dict[str, Any]:
        """The `/api/model` object."""
        return {
            "name": self.name,
            "version": self.version,
            "input": [28, 28, 1],
            "classes": list(range(10)),
            "test_accuracy": self.test_accuracy,
            "not_digit_threshold": self.not_digit_threshold,
        }


class Classifier:
    """The trained CNN behind one compiled `tf.function` with a fixed input signature.

    `model.predict` costs about 100 ms a call on two cores (it builds a dataset and a
    progress bar every time); the compiled call costs about 1 ms for one image. `threads`
    (0: TensorFlow's own choice) caps the threads of a call, see `limit_threads`.
    """

    def __init__(self, path: Path = MODEL_PATH, threads: int = 0) -> None:
        if threads:
            limit_threads(threads)
        self.path = Path(path)
        self.model = keras.saving.load_model(self.path, compile=False)
        self._forward = tf.function(
            lambda inputs: self.model(inputs, training=False),
            input_signature=[tf.TensorSpec(shape=(None, 28, 28, 1), dtype=tf.float32)],
            reduce_retracing=True,
        )
        self.info = read_model_info(self.path)

    def predict(self, inputs: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return probabilities (N, classes) for inputs (N, 28, 28) or (N, 28, 28, 1): the ten
        digits, then "not a digit" for a model that has it."""
        batch = np.asarray(inputs, dtype=np.float32).reshape((-1, 28, 28, 1))
        return np.asarray(self._forward(tf.constant(batch)), dtype=np.float32)

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 8, 64)) -> None:
        """Run the compiled call once per batch size so the first user waits for nothing."""
        for size in batch_sizes:
            self.predict(np.zeros((size, 28, 28), dtype=np.float32))
        logger.info("model %s warmed up", self.path.name)


def limit_threads(threads: int) -> None:
    """Let TensorFlow use `threads` threads within a call and as many between calls.

    Its own choice is one per core, and its threads spin while they wait: on two cores, a
    call of one picture then costs 1.6 ms of CPU instead of 0.8 (64 pictures 18.8 ms instead
    of 16.4), and the server's decode processes want those cores too. Only possible before
    TensorFlow starts its runtime in this process; afterwards the threads stay as they were.
    """
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads()) == (threads, threads):
        return
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logger.warning("TensorFlow has started already: its threads stay as they were")


def read_model_info(model_path: Path = MODEL_PATH) -> ModelInfo:
    """Name, version and test accuracy from `metrics.json` beside the model file."""
    metrics_path = model_path.with_name(METRICS_PATH.name)
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        metrics = {}
    return ModelInfo(
        name=str(metrics.get("name", "digits-cnn")),
        version=str(metrics.get("version", "unknown")),
        test_accuracy=float(metrics.get("test_accuracy", 0.0)),
        not_digit_threshold=float(metrics.get("not_digit_threshold", 1.0)),
    )
