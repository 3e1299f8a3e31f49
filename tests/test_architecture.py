"""The served CNN, layer for layer, the committed file that carries it, and the founding CNN.

The served model is `build_model(classes=11, temperature=T, deeper=True)`: the founding CNN
(convolutions, max-pool, dropout .25, flatten, dense 128, dropout .5, a softmax head) with
two pairs of convolutions instead of two, an eleventh output ("not a digit"), and the
temperature T fitted in training built in between the logits and the softmax.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from model import METRICS_PATH, MODEL_PATH
from model.architecture import NOT_DIGIT, build_model
from model.inference import Classifier

Layers = list[tuple[str, dict[str, object]]]

FOUNDING_LAYERS: Layers = [
    ("Conv2D", {"filters": 32, "kernel_size": (3, 3), "activation": "relu"}),
    ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": (2, 2)}),
    ("Dropout", {"rate": 0.25}),
    ("Flatten", {}),
    ("Dense", {"units": 128, "activation": "relu"}),
    ("Dropout", {"rate": 0.5}),
    ("Dense", {"units": 10, "activation": "softmax"}),
]
FOUNDING_PARAMETERS = 1_199_882


def served_layers(temperature: float) -> Layers:
    """Conv 32, 32, pool, conv 64, 64, pool, dropout .25, flatten, dense 128, dropout .5,
    eleven logits, divided by the temperature, softmax."""
    return [
        ("Conv2D", {"filters": 32, "kernel_size": (3, 3), "activation": "relu"}),
        ("Conv2D", {"filters": 32, "kernel_size": (3, 3), "activation": "relu"}),
        ("MaxPooling2D", {"pool_size": (2, 2)}),
        ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "activation": "relu"}),
        ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "activation": "relu"}),
        ("MaxPooling2D", {"pool_size": (2, 2)}),
        ("Dropout", {"rate": 0.25}),
        ("Flatten", {}),
        ("Dense", {"units": 128, "activation": "relu"}),
        ("Dropout", {"rate": 0.5}),
        ("Dense", {"units": NOT_DIGIT + 1, "activation": "linear", "name": "logits"}),
        ("Rescaling", {"scale": pytest.approx(1.0 / temperature), "offset": 0.0}),
        ("Softmax", {"axis": -1}),
    ]


# 32 (3x3 + 1) + 32 (3x3x32 + 1) + 64 (3x3x32 + 1) + 64 (3x3x64 + 1) + (4x4x64 + 1) 128
# + (128 + 1) 11.
SERVED_PARAMETERS = 197_611
# The committed file holds weights and layer settings only (about 0.8 MB); the founding CNN
# was about 5 MB, and optimizer state would triple either.
MAX_FILE_BYTES = 1_500_000


def layer_summary(model: keras.Model, expected: Layers) -> Layers:
    """Each layer's class and the settings that `expected` fixes for it."""
    summary: Layers = []
    for layer, (_, settings) in zip(model.layers, expected, strict=True):
        config = layer.get_config()
        summary.append((type(layer).__name__, {key: _plain(config[key]) for key in settings}))
    return summary


def _plain(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def stated_temperature() -> float:
    """The temperature metrics.json says training fitted."""
    return float(json.loads(METRICS_PATH.read_text())["temperature"])


def test_founding_build_is_still_the_founding_cnn() -> None:
    """build_model() with its defaults: conv 32, conv 64, pool, dropout, dense 128, softmax 10."""
    model = build_model()
    assert model.input_shape == (None, 28, 28, 1)
    assert layer_summary(model, FOUNDING_LAYERS) == FOUNDING_LAYERS
    assert model.count_params() == FOUNDING_PARAMETERS


def test_served_architecture_is_the_deeper_eleven_output_cnn() -> None:
    """build_model(11, temperature, deeper=True): two pairs of convolutions, eleven outputs,
    logits divided by the temperature before the softmax, a sixth of the founding parameters."""
    temperature = 1.25
    expected = served_layers(temperature)
    model = build_model(classes=NOT_DIGIT + 1, temperature=temperature, deeper=True)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, NOT_DIGIT + 1)
    assert layer_summary(model, expected) == expected
    assert model.count_params() == SERVED_PARAMETERS


def test_committed_model_is_the_served_architecture_with_its_temperature() -> None:
    """The committed file is that CNN, divided by the temperature metrics.json states."""
    model = keras.saving.load_model(MODEL_PATH, compile=False)
    expected = served_layers(stated_temperature())
    assert model.input_shape == (None, 28, 28, 1)
    assert layer_summary(model, expected) == expected
    assert model.count_params() == SERVED_PARAMETERS
    metrics = json.loads(METRICS_PATH.read_text())
    assert metrics["classes"] == NOT_DIGIT + 1
    assert metrics["parameters"] == SERVED_PARAMETERS


def is_inference_only(path: Path) -> bool:
    """Whether a .keras file holds no compile settings and no optimizer weights."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.h5")
    with h5py.File(io.BytesIO(weights), "r") as stored:
        groups = set(stored)
    return not config.get("compile_config") and groups <= {"layers", "vars"}


def test_committed_model_has_no_optimizer_state_and_is_small() -> None:
    """The committed file is saved for inference: no compile settings, no optimizer weights."""
    assert MODEL_PATH.stat().st_size < MAX_FILE_BYTES
    assert is_inference_only(MODEL_PATH)


def test_a_trained_model_saved_as_is_would_be_caught(tmp_path: Path) -> None:
    """A model saved with its optimizer, as `model.save` after `fit` does, is not inference-only."""
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((2, 28, 28, 1)), np.zeros(2), verbose=0)
    model.save(tmp_path / "trained.keras")
    assert not is_inference_only(tmp_path / "trained.keras")


THREADS_PROBE = """
import json
import numpy as np
import tensorflow as tf
from model.inference import Classifier
classifier = Classifier(threads=1)
inputs = np.random.default_rng(3).random((5, 28, 28), dtype=np.float32)
probabilities = classifier.predict(inputs).tolist()
Classifier(threads=2)  # too late: TensorFlow has started, the threads stay at one
threads = [tf.config.threading.get_intra_op_parallelism_threads(),
           tf.config.threading.get_inter_op_parallelism_threads()]
print(json.dumps({"threads": threads, "probabilities": probabilities}))
"""


def test_a_classifier_limited_to_one_thread_reads_the_same() -> None:
    """`threads=1` (the server's default) caps TensorFlow's threads in a fresh process, and a
    later cap once TensorFlow has started leaves them as they were; the readings are the
    ones of TensorFlow's own threads."""
    result = subprocess.run(
        [sys.executable, "-c", THREADS_PROBE], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parent.parent, check=True,
    )
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["threads"] == [1, 1]
    assert "TensorFlow has started already" in result.stderr
    inputs = np.random.default_rng(3).random((5, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(probe["probabilities"], Classifier().predict(inputs), atol=1e-5)


def test_compiled_call_matches_keras() -> None:
    """The compiled batch call gives what Keras gives: (N, 11) probabilities summing to 1."""
    classifier = Classifier()
    inputs = np.random.default_rng(3).random((5, 28, 28), dtype=np.float32)
    probabilities = classifier.predict(inputs)
    expected = classifier.model(inputs[..., None], training=False).numpy()
    assert probabilities.shape == (5, NOT_DIGIT + 1)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
