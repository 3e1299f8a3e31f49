"""The founding CNN, layer for layer, and the committed model file that carries it."""

from __future__ import annotations

import keras
import numpy as np

from model import MODEL_PATH
from model.architecture import build_model
from model.inference import Classifier

FOUNDING_LAYERS = [
    ("Conv2D", {"filters": 32, "kernel_size": (3, 3), "activation": "relu"}),
    ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": (2, 2)}),
    ("Dropout", {"rate": 0.25}),
    ("Flatten", {}),
    ("Dense", {"units": 128, "activation": "relu"}),
    ("Dropout", {"rate": 0.5}),
    ("Dense", {"units": 10, "activation": "softmax"}),
]


def layer_summary(model: keras.Model) -> list[tuple[str, dict[str, object]]]:
    """Each layer's class and the settings the founding CNN fixes."""
    summary = []
    for layer, (_, expected) in zip(model.layers, FOUNDING_LAYERS, strict=True):
        config = layer.get_config()
        summary.append((type(layer).__name__, {key: _plain(config[key]) for key in expected}))
    return summary


def _plain(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def test_architecture_is_the_founding_cnn() -> None:
    """Conv 32, conv 64, pool, dropout .25, flatten, dense 128, dropout .5, softmax 10."""
    model = build_model()
    assert model.input_shape == (None, 28, 28, 1)
    assert layer_summary(model) == FOUNDING_LAYERS
    assert model.count_params() == 1_199_882


def test_committed_model_has_the_architecture_and_no_optimizer_state() -> None:
    """The committed file is the founding CNN, saved for inference only (about 5 MB)."""
    model = keras.saving.load_model(MODEL_PATH, compile=False)
    assert layer_summary(model) == FOUNDING_LAYERS
    assert MODEL_PATH.stat().st_size < 6 * 1024 * 1024


def test_compiled_call_matches_keras() -> None:
    """The compiled batch call gives what Keras gives, as probabilities."""
    classifier = Classifier()
    inputs = np.random.default_rng(3).random((5, 28, 28), dtype=np.float32)
    probabilities = classifier.predict(inputs)
    expected = classifier.model(inputs[..., None], training=False).numpy()
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
