"""Train the founding CNN on MNIST with canvas-like augmentation and write all of `model/`.

Run:  make train      (or: .venv/bin/python -m train [--data DIR] [--epochs N] [--quick])
      nice -n 10 .venv/bin/python -m train --not-digit --out artifacts/model-v2

Writes model/digits.keras (inference only, no optimizer state), model/metrics.json,
model/confusion.png and model/training.png.

With `--not-digit` the model has an eleventh output, "not a digit", learnt from the synthetic
non-digits of `train.nondigits` mixed into every epoch; a temperature fitted on validation
data is built into the saved model, a rejection threshold on the not-digit probability is
chosen on validation digits, and reliability.png is written beside the confusion matrix.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model import METRICS_PATH, MODEL_DIR, MODEL_PATH
from model.preprocess import to_model_input
from train.augment import augment_all
from train.canvas import canvas_set
from train.data import DataError, Mnist, load_mnist


@dataclass(frozen=True)
class Config:
    """Training defaults; every figure in metrics.json comes from one of these."""

    seed: int = 1234  # Seeds NumPy, Python and TensorFlow.
    epochs: int = 18  # Upper bound; early stopping may end sooner.
    batch_size: int = 128
    learning_rate: float = 1e-3  # Adam's starting rate, cosine-decayed to 2 % of it.
    validation_size: int = 6000  # Held out from the training set; the test set is for the end.
    augmented_rounds: int = 4  # Distinct augmented copies of the training set, cycled by epoch.
    augmented_fraction: float = 0.5  # Share of each epoch's images drawn from the augmented copy.
    patience: int = 5  # Early stopping on validation loss, best weights restored.
    canvas_images: int = 10000  # Test digits redrawn as canvas pictures for the robustness figure.
    processes: int = 2  # Augmentation worker processes.
    # The rest is for --not-digit only.
    deeper: bool = True  # Two pairs of convolutions: 99.56 % on MNIST test; the founding CNN 99.39.
    not_digit_share: float = 0.2  # Share of each batch (and epoch) that is non-digits.
    nondigit_pool: int = 40000  # Distinct training non-digits, drawn from at random by batch.
    validation_nondigits: int = 3000  # Non-digits from the validation digits, for val_loss and T.
    evaluation_per_kind: int = 500  # Non-digits of each kind from MNIST test, for the figures.
    target_false_rejection: float = 0.003  # Validation digits the threshold may reject.
    calibration_bins: int = 15  # Bins of the expected calibration error (on max probability).


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate and save; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    parser.add_argument(
        "--out", type=Path, default=MODEL_DIR, help="where to write the model files"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the pipeline")
    parser.add_argument(
        "--not-digit", action="store_true", help='train an eleventh output, "not a digit"'
    )
    arguments = parser.parse_args(argv)
    config = Config(epochs=arguments.epochs)
    if arguments.quick:
        config = dataclasses.replace(
            config,
            epochs=1,
            augmented_rounds=1,
            canvas_images=500,
            nondigit_pool=2000,
            validation_nondigits=300,
            evaluation_per_kind=30,
        )
    if arguments.not_digit:
        return train_with_not_digit(arguments, config)

    started = time.monotonic()
    # ---- data -------------------------------------------------------------------------
    try:
        mnist, split, augmented, validation_augmented = _digits(arguments, config)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"augmentation done in {time.monotonic() - started:.0f} s", flush=True)

    # ---- model and training -----------------------------------------------------------
    from model.architecture import build_model

    model = build_model()
    validation_images = np.concatenate([split.validation_images, validation_augmented])
    validation_labels = np.concatenate([split.validation_labels, split.validation_labels])
    history = _fit(
        model,
        _digit_batches(split, augmented, config),
        (_scaled(validation_images), validation_labels),
        config,
    )

    # ---- evaluate ---------------------------------------------------------------------
    probabilities = model.predict(_scaled(mnist.test_images), batch_size=500, verbose=0)
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(mnist.test_labels, predicted)
    test_accuracy = float(np.mean(predicted == mnist.test_labels))
    print(f"test accuracy (plain MNIST test images): {test_accuracy:.4%}", flush=True)
    canvas = _canvas_accuracy(model, mnist, config)
    print(f"canvas accuracy (redrawn test digits through preprocessing): {canvas['accuracy']:.4%}")

    # ---- save -------------------------------------------------------------------------
    out: Path = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    inference_model = build_model()
    inference_model.set_weights(model.get_weights())
    inference_model.save(out / MODEL_PATH.name)
    metrics = {
        "name": "digits-cnn",
        "version": datetime.datetime.now(datetime.UTC).strftime("%Y.%m.%d-%H%M"),
        "test_accuracy": test_accuracy,
        "test_images": len(mnist.test_labels),
        "per_class_accuracy": per_class_accuracy(confusion),
        "confusion_matrix": confusion.tolist(),
        "canvas": canvas,
        **_provenance(history, config, started, mnist, inference_model),
    }
    (out / METRICS_PATH.name).write_text(json.dumps(metrics, indent=2) + "\n")
    _plot(history.history, confusion, out)
    print(f"wrote {out}/ in {metrics['wall_time_s']:.0f} s", flush=True)
    return 0


def train_with_not_digit(arguments: argparse.Namespace, config: Config) -> int:
    """Train, calibrate, evaluate and save the eleven-class model; returns the exit status."""
    from model.architecture import NOT_DIGIT
    from train.nondigits import EVALUATION_SHARES, font_nondigits, make_nondigits

    classes = NOT_DIGIT + 1
    started = time.monotonic()
    # ---- data -------------------------------------------------------------------------
    try:
        mnist, split, augmented, validation_augmented = _digits(arguments, config)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"making {config.nondigit_pool} training non-digits ...", flush=True)
    # Training non-digits come from training digits only, validation ones from validation
    # digits, evaluation ones from MNIST test: no digit is cut up on both sides of a split.
    pool, _ = make_nondigits(
        split.train_images,
        split.train_labels,
        config.nondigit_pool,
        seed=config.seed + 101,
        processes=config.processes,
    )
    validation_nondigits, _ = make_nondigits(
        split.validation_images,
        split.validation_labels,
        config.validation_nondigits,
        seed=config.seed + 202,
        processes=config.processes,
    )
    print(f"data ready in {time.monotonic() - started:.0f} s", flush=True)

    # ---- model and training -----------------------------------------------------------
    import keras

    from model.architecture import build_model

    # Trained with the calibrated head at temperature 1 (the same function as a softmax
    # Dense), so the logits the temperature is fitted on are one layer's output.
    model = build_model(classes, temperature=1.0, deeper=config.deeper)
    digits = _digit_batches(split, augmented, config)
    batches = _with_nondigits(digits, _as_bytes(pool), config, classes - 1)
    validation_inputs = np.concatenate(
        [
            _scaled(split.validation_images),
            _scaled(validation_augmented),
            validation_nondigits[..., None],
        ]
    )
    validation_labels = np.concatenate(
        [
            split.validation_labels,
            split.validation_labels,
            np.full(len(validation_nondigits), NOT_DIGIT, dtype=np.uint8),
        ]
    )
    history = _fit(model, batches, (validation_inputs, validation_labels), config)

    # ---- calibrate ----------------------------------------------------------------------
    logits_model = keras.Model(model.inputs[0], model.get_layer("logits").output)
    validation_logits = logits_model.predict(validation_inputs, batch_size=500, verbose=0)
    temperature = fit_temperature(validation_logits, validation_labels)
    print(f"temperature {temperature:.3f}", flush=True)
    digit_count = 2 * len(split.validation_labels)
    validation_not_digit = _softmax(validation_logits[:digit_count] / temperature)[:, NOT_DIGIT]
    threshold = rejection_threshold(validation_not_digit, config.target_false_rejection)
    print(f"not-digit threshold {threshold:.4g}", flush=True)

    # ---- evaluate ---------------------------------------------------------------------
    test_logits = logits_model.predict(_scaled(mnist.test_images), batch_size=500, verbose=0)
    before = _softmax(test_logits)
    after = _softmax(test_logits / temperature)
    labels = mnist.test_labels
    test_accuracy = float(np.mean(after[:, :NOT_DIGIT].argmax(axis=1) == labels))
    ece_before = expected_calibration_error(before, labels, config.calibration_bins)
    ece_after = expected_calibration_error(after, labels, config.calibration_bins)
    test_rejected = after[:, NOT_DIGIT] >= threshold
    print(f"test accuracy (digit outputs, plain MNIST test): {test_accuracy:.4%}", flush=True)
    print(f"ECE before {ece_before:.4%}, after {ece_after:.4%}", flush=True)
    print(f"false rejection on MNIST test: {test_rejected.mean():.4%}", flush=True)

    canvas_inputs, canvas_styles = _canvas_inputs(mnist, config)
    canvas_logits = logits_model.predict(canvas_inputs, batch_size=500, verbose=0)
    canvas_probabilities = _softmax(canvas_logits / temperature)
    canvas = _canvas_figures(
        canvas_probabilities, labels[: config.canvas_images], canvas_styles, threshold
    )
    print(
        f"canvas: accuracy {canvas['accuracy']:.4%}, "
        f"false rejection {canvas['false_rejection']:.4%}",
        flush=True,
    )

    evaluation, evaluation_kinds = make_nondigits(
        mnist.test_images,
        mnist.test_labels,
        config.evaluation_per_kind * len(EVALUATION_SHARES),
        seed=config.seed + 303,
        shares=EVALUATION_SHARES,
        processes=config.processes,
    )
    evaluation_logits = logits_model.predict(evaluation[..., None], batch_size=500, verbose=0)
    evaluation_rejected = _softmax(evaluation_logits / temperature)[:, NOT_DIGIT] >= threshold
    rejection_by_kind = {
        str(kind): float(evaluation_rejected[evaluation_kinds == kind].mean())
        for kind in sorted(set(evaluation_kinds.tolist()))
    }
    print(f"non-digits rejected: {evaluation_rejected.mean():.4%}", flush=True)
    for kind, rate in rejection_by_kind.items():
        print(f"  {kind:10s} {rate:.2%}", flush=True)

    fonts, font_names = font_nondigits(seed=config.seed + 404)
    fonts_figures: dict[str, Any] = {"pictures": len(font_names)}
    if font_names:
        font_logits = logits_model.predict(fonts[..., None], batch_size=500, verbose=0)
        font_rejected = _softmax(font_logits / temperature)[:, NOT_DIGIT] >= threshold
        characters = np.asarray([name.rsplit(":", 1)[1] for name in font_names])
        faces = np.asarray([name.rsplit(":", 1)[0] for name in font_names])
        by_character = {
            str(character): float(font_rejected[characters == character].mean())
            for character in sorted(set(characters.tolist()))
        }
        fonts_figures.update(
            rejected=float(font_rejected.mean()),
            fonts=len(set(faces.tolist())),
            by_character=by_character,
            by_font={
                str(face): float(font_rejected[faces == face].mean())
                for face in sorted(set(faces.tolist()))
            },
        )
        print(f"font-rendered letters and symbols rejected: {font_rejected.mean():.4%}")
    else:
        print("no font files found: no font-rendered evaluation", flush=True)

    # The operating point: rejected when the not-digit probability reaches the threshold,
    # else the likeliest digit. Rows 0-9: MNIST test; row 10: the evaluation non-digits.
    test_decided = np.where(test_rejected, NOT_DIGIT, after[:, :NOT_DIGIT].argmax(axis=1))
    evaluation_decided = np.where(
        evaluation_rejected,
        NOT_DIGIT,
        _softmax(evaluation_logits)[:, :NOT_DIGIT].argmax(axis=1),
    )
    confusion = confusion_matrix(
        np.concatenate([labels, np.full(len(evaluation), NOT_DIGIT, dtype=np.uint8)]),
        np.concatenate([test_decided, evaluation_decided]),
        classes,
    )

    # ---- save -------------------------------------------------------------------------
    out: Path = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    inference_model = build_model(classes, temperature=temperature, deeper=config.deeper)
    inference_model.set_weights(model.get_weights())
    inference_model.save(out / MODEL_PATH.name)
    speed = _speed(out / MODEL_PATH.name)
    print(f"speed: one picture {speed['one_ms']:.2f} ms, 64 {speed['batch_64_ms']:.2f} ms")
    names = [str(digit) for digit in range(NOT_DIGIT)] + ["not_digit"]
    metrics = {
        "name": "digits-cnn",
        "version": datetime.datetime.now(datetime.UTC).strftime("%Y.%m.%d-%H%M"),
        "classes": classes,
        "class_names": names,
        "test_accuracy": test_accuracy,
        "test_images": len(labels),
        "per_class_accuracy": per_class_accuracy(confusion, names),
        "confusion_matrix": confusion.tolist(),
        "confusion_rows": "0-9: MNIST test digits; 10: evaluation non-digits; at the threshold",
        "temperature": temperature,
        "ece_before": ece_before,
        "ece_after": ece_after,
        "ece_bins": config.calibration_bins,
        "not_digit_threshold": threshold,
        "false_rejection": {
            "mnist_test": float(test_rejected.mean()),
            "canvas": canvas["false_rejection"],
            "validation": float((validation_not_digit >= threshold).mean()),
        },
        "canvas": canvas,
        "nondigit_rejection": {
            "overall": float(evaluation_rejected.mean()),
            "pictures": len(evaluation),
            "by_kind": rejection_by_kind,
            "fonts": fonts_figures,
        },
        "speed_ms": speed,
        **_provenance(history, config, started, mnist, inference_model),
    }
    (out / METRICS_PATH.name).write_text(json.dumps(metrics, indent=2) + "\n")
    _plot(history.history, confusion, out, names)
    _plot_reliability(before, after, labels, config.calibration_bins, out)
    print(f"wrote {out}/ in {metrics['wall_time_s']:.0f} s", flush=True)
    return 0


def _as_bytes(pictures: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Float pictures in [0, 1] as uint8, the way augmented digits are kept."""
    return np.round(np.clip(pictures, 0.0, 1.0) * 255.0).astype(np.uint8)


def _with_nondigits(digits: Any, pool: NDArray[np.uint8], config: Config, seed_offset: int) -> Any:
    """The digit batches with non-digits (label 10) added to each, `not_digit_share` of it."""
    import keras

    per_batch = round(config.batch_size * config.not_digit_share / (1 - config.not_digit_share))

    class WithNonDigits(keras.utils.PyDataset):  # type: ignore[misc]
        """Each digit batch plus `per_batch` non-digits drawn at random from the pool."""

        def __init__(self) -> None:
            super().__init__()
            self.generator = np.random.default_rng(config.seed + seed_offset)

        def __len__(self) -> int:
            return len(digits)

        def __getitem__(self, index: int) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
            images, labels = digits[index]
            chosen = self.generator.integers(0, len(pool), per_batch)
            extra = (pool[chosen].astype(np.float32) / 255.0)[..., None]
            return (
                np.concatenate([images, extra]),
                np.concatenate([labels, np.full(per_batch, 10, dtype=labels.dtype)]),
            )

        def on_epoch_end(self) -> None:
            digits.on_epoch_end()

    return WithNonDigits()


def _softmax(logits: NDArray[Any]) -> NDArray[np.float64]:
    """Row-wise softmax in float64."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return np.asarray(exponentials / exponentials.sum(axis=1, keepdims=True))


def fit_temperature(logits: NDArray[Any], labels: NDArray[Any]) -> float:
    """The temperature that minimises the negative log-likelihood of the labels."""
    from scipy.optimize import minimize_scalar

    values = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(labels))

    def loss(log_temperature: float) -> float:
        scaled = values / math.exp(log_temperature)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_sum - scaled[rows, labels.astype(np.int64)]))

    result = minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded")
    return float(math.exp(float(result.x)))


def expected_calibration_error(
    probabilities: NDArray[Any], labels: NDArray[Any], bins: int = 15
) -> float:
    """ECE: mean |accuracy - confidence| over equal-width bins of the top probability."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for index in range(bins):
        members = which == index
        if members.any():
            gap = abs(float(correct[members].mean()) - float(confidence[members].mean()))
            error += gap * float(members.mean())
    return error


def rejection_threshold(not_digit: NDArray[Any], target: float) -> float:
    """The lowest threshold that rejects at most `target` of these digits (p >= threshold)."""
    ordered = np.sort(np.asarray(not_digit, dtype=np.float64))[::-1]
    allowed = math.floor(target * len(ordered))
    # Just above the first digit that must not be rejected.
    return float(np.nextafter(ordered[allowed], 1.0))


def _canvas_inputs(mnist: Mnist, config: Config) -> tuple[NDArray[np.float32], list[str]]:
    """Test digits redrawn as canvas pictures, decoded and preprocessed as served."""
    pictures = canvas_set(mnist.test_images[: config.canvas_images])
    inputs = np.zeros((len(pictures), 28, 28, 1), dtype=np.float32)
    styles = []
    for index, (content, style) in enumerate(pictures):
        model_input = to_model_input(Image.open(io.BytesIO(content)))
        if model_input is not None:
            inputs[index, ..., 0] = model_input
        styles.append(style)
    return inputs, styles


def _canvas_figures(
    probabilities: NDArray[Any], labels: NDArray[Any], styles: list[str], threshold: float
) -> dict[str, Any]:
    """Digit accuracy and false rejection on the canvas set, overall and by style."""
    correct = probabilities[:, :10].argmax(axis=1) == labels
    rejected = probabilities[:, 10] >= threshold
    kinds = np.asarray(styles)
    return {
        "accuracy": float(correct.mean()),
        "accepted_and_correct": float((correct & ~rejected).mean()),
        "false_rejection": float(rejected.mean()),
        "images": len(labels),
        "by_style": {style: float(correct[kinds == style].mean()) for style in sorted(set(styles))},
        "false_rejection_by_style": {
            style: float(rejected[kinds == style].mean()) for style in sorted(set(styles))
        },
    }


def _speed(path: Path) -> dict[str, float]:
    """Median milliseconds of the server's compiled call for one picture and for 64."""
    from model.inference import Classifier

    classifier = Classifier(path)
    figures = {}
    for name, size in (("one_ms", 1), ("batch_64_ms", 64)):
        batch = np.random.default_rng(0).random((size, 28, 28), dtype=np.float32)
        for _ in range(20):
            classifier.predict(batch)
        times = []
        for _ in range(200):
            begin = time.perf_counter()
            classifier.predict(batch)
            times.append((time.perf_counter() - begin) * 1000.0)
        figures[name] = float(np.median(times))
    return figures


def _plot_reliability(
    before: NDArray[Any], after: NDArray[Any], labels: NDArray[Any], bins: int, out: Path
) -> None:
    """Accuracy against confidence in equal-width bins, before and after the temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes_pair = plt.subplots(1, 2, figsize=(10, 4.6))
    edges = np.linspace(0.0, 1.0, bins + 1)
    for axes, probabilities, title in (
        (axes_pair[0], before, "before"),
        (axes_pair[1], after, "after temperature scaling"),
    ):
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == labels
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
        accuracy = np.array(
            [
                correct[which == index].mean() if (which == index).any() else 0.0
                for index in range(bins)
            ]
        )
        counts = np.bincount(which, minlength=bins)
        axes.bar(
            edges[:-1],
            accuracy,
            width=1.0 / bins,
            align="edge",
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        for index in range(bins):
            if counts[index]:
                axes.text(
                    edges[index] + 0.5 / bins,
                    0.02,
                    str(counts[index]),
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
        ece = expected_calibration_error(probabilities, labels, bins)
        axes.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence (top probability)",
            ylabel="accuracy",
            title=f"MNIST test, {title}: ECE {ece:.3%}",
        )
        axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(out / "reliability.png", dpi=100)
    plt.close(figure)


@dataclass(frozen=True)
class Split:
    """Training and validation parts of MNIST's training set."""

    train_images: NDArray[np.uint8]
    train_labels: NDArray[np.uint8]
    validation_images: NDArray[np.uint8]
    validation_labels: NDArray[np.uint8]


def _split(mnist: Mnist, config: Config) -> Split:
    """Hold out a seeded random validation set from the training images."""
    order = np.random.default_rng(config.seed).permutation(len(mnist.train_labels))
    held, kept = order[: config.validation_size], order[config.validation_size :]
    return Split(
        mnist.train_images[kept],
        mnist.train_labels[kept],
        mnist.train_images[held],
        mnist.train_labels[held],
    )


def _provenance(
    history: Any, config: Config, started: float, mnist: Mnist, model: Any
) -> dict[str, Any]:
    """What every metrics.json records of its run: history, config, data, versions, size."""
    return {
        "validation_accuracy": float(
            history.history["val_accuracy"][-1 - _best_offset(history, config)]
        ),
        "epochs": len(history.history["loss"]),
        "history": {
            key: [float(value) for value in values] for key, values in history.history.items()
        },
        "wall_time_s": round(time.monotonic() - started, 1),
        "config": dataclasses.asdict(config),
        "data_sha256": mnist.sha256,
        "versions": library_versions(),
        "parameters": int(model.count_params()),
    }


def _digits(
    arguments: argparse.Namespace, config: Config
) -> tuple[Mnist, Split, list[NDArray[np.uint8]], NDArray[np.uint8]]:
    """MNIST (raises DataError), seeded; its split; augmented training rounds and validation."""
    mnist = load_mnist(arguments.data)
    if arguments.quick:
        mnist = dataclasses.replace(
            mnist, train_images=mnist.train_images[:8000], train_labels=mnist.train_labels[:8000]
        )
    _seed_everything(config.seed)
    split = _split(mnist, config)
    print(
        f"augmenting {config.augmented_rounds} x {len(split.train_images)} digits ...", flush=True
    )
    augmented = [
        augment_all(split.train_images, seed=config.seed + round_index, processes=config.processes)
        for round_index in range(config.augmented_rounds)
    ]
    validation_augmented = augment_all(
        split.validation_images, seed=config.seed - 1, processes=config.processes
    )
    return mnist, split, augmented, validation_augmented


def _digit_batches(split: Split, augmented: list[NDArray[np.uint8]], config: Config) -> Any:
    """Each epoch's batches: plain digits mixed with one of the augmented rounds."""
    from train.batches import MixedBatches

    return MixedBatches(
        split.train_images,
        augmented,
        split.train_labels,
        batch_size=config.batch_size,
        augmented_fraction=config.augmented_fraction,
        seed=config.seed,
    )


def _fit(model: Any, batches: Any, validation: tuple[Any, Any], config: Config) -> Any:
    """Compile with Adam on a cosine decay, fit with early stopping; returns the history."""
    import keras

    # As many batches an epoch as plain digits fill: the augmented ones replace, not add.
    steps = len(batches) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        batches,
        epochs=config.epochs,
        validation_data=validation,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, restore_best_weights=True
            )
        ],
        verbose=1 if sys.stdout.isatty() else 2,
    )


def _scaled(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """uint8 (N, 28, 28) to float (N, 28, 28, 1) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., None]


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow."""
    import keras

    keras.utils.set_random_seed(seed)


def confusion_matrix(
    labels: NDArray[np.uint8], predicted: NDArray[Any], classes: int = 10
) -> NDArray[np.int64]:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def per_class_accuracy(
    confusion: NDArray[np.int64], names: list[str] | None = None
) -> dict[str, float]:
    """Each class's share read right, by name (the digits by default)."""
    names = names or [str(digit) for digit in range(len(confusion))]
    return {
        name: float(confusion[index, index] / max(confusion[index].sum(), 1))
        for index, name in enumerate(names)
    }


def _canvas_accuracy(model: Any, mnist: Mnist, config: Config) -> dict[str, Any]:
    """Accuracy on test digits redrawn as canvas pictures, decoded and preprocessed as served."""
    images = mnist.test_images[: config.canvas_images]
    labels = mnist.test_labels[: config.canvas_images]
    pictures = canvas_set(images)
    inputs = np.zeros((len(pictures), 28, 28, 1), dtype=np.float32)
    styles = []
    for index, (content, style) in enumerate(pictures):
        model_input = to_model_input(Image.open(io.BytesIO(content)))
        if model_input is not None:
            inputs[index, ..., 0] = model_input
        styles.append(style)
    predicted = model.predict(inputs, batch_size=500, verbose=0).argmax(axis=1)
    correct = predicted == labels
    kinds = np.asarray(styles)
    by_style = {style: float(correct[kinds == style].mean()) for style in sorted(set(styles))}
    return {"accuracy": float(correct.mean()), "images": len(labels), "by_style": by_style}


def _best_offset(history: Any, config: Config) -> int:
    """How many epochs after the best one training ran (early stopping restores the best)."""
    losses = history.history["val_loss"]
    return len(losses) - 1 - int(np.argmin(losses))


def library_versions() -> dict[str, str]:
    """Library versions that produced the model."""
    import keras
    import matplotlib
    import PIL
    import scipy
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pillow": PIL.__version__,
        "matplotlib": matplotlib.__version__,
    }


def _plot(
    history: dict[str, list[float]],
    confusion: NDArray[np.int64],
    out: Path,
    names: list[str] | None = None,
) -> None:
    """Draw the learning curves and the confusion matrix for the README."""
    size = len(confusion)
    names = [str(index) for index in range(size)] if names is None else names
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history["loss"]) + 1)
    loss_axes.plot(epochs, history["loss"], label="training")
    loss_axes.plot(epochs, history["val_loss"], label="validation")
    loss_axes.set(title="Loss", xlabel="epoch")
    loss_axes.legend()
    accuracy_axes.plot(epochs, history["accuracy"], label="training")
    accuracy_axes.plot(epochs, history["val_accuracy"], label="validation")
    accuracy_axes.set(title="Accuracy", xlabel="epoch")
    accuracy_axes.legend()
    figure.tight_layout()
    figure.savefig(out / "training.png", dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 5.4))
    shown = axes.imshow(np.log1p(confusion), cmap="Blues")
    for row in range(size):
        for column in range(size):
            if confusion[row, column]:
                colour = "white" if row == column else "black"
                axes.text(
                    column,
                    row,
                    str(confusion[row, column]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=colour,
                )
    axes.set(
        xticks=range(size),
        yticks=range(size),
        xticklabels=[name.replace("not_digit", "not") for name in names],
        yticklabels=[name.replace("not_digit", "not") for name in names],
        xlabel="predicted",
        ylabel="true",
        title="Confusion (MNIST test)" if size == 10 else "Confusion (MNIST test + non-digits)",
    )
    figure.colorbar(shown, ax=axes, label="log(1 + count)")
    figure.tight_layout()
    figure.savefig(out / "confusion.png", dpi=100)
    plt.close(figure)
