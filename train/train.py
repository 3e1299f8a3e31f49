"""Train the founding CNN on MNIST with canvas-like augmentation and write all of `model/`.

Run:  make train      (or: .venv/bin/python -m train [--data DIR] [--epochs N] [--quick])

Writes model/digits.keras (inference only, no optimizer state), model/metrics.json,
model/confusion.png and model/training.png.
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


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate and save; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    parser.add_argument(
        "--out", type=Path, default=MODEL_DIR, help="where to write the model files"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the pipeline")
    arguments = parser.parse_args(argv)
    config = Config(epochs=arguments.epochs)
    if arguments.quick:
        config = dataclasses.replace(config, epochs=1, augmented_rounds=1, canvas_images=500)

    started = time.monotonic()
    # ---- data -------------------------------------------------------------------------
    try:
        mnist = load_mnist(arguments.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
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
    print(f"augmentation done in {time.monotonic() - started:.0f} s", flush=True)

    # ---- model and training -----------------------------------------------------------
    import keras

    from model.architecture import build_model
    from train.batches import MixedBatches

    model = build_model()
    steps = math.ceil(len(split.train_images) / config.batch_size) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    batches = MixedBatches(
        split.train_images,
        augmented,
        split.train_labels,
        batch_size=config.batch_size,
        augmented_fraction=config.augmented_fraction,
        seed=config.seed,
    )
    validation_images = np.concatenate([split.validation_images, validation_augmented])
    validation_labels = np.concatenate([split.validation_labels, split.validation_labels])
    history = model.fit(
        batches,
        epochs=config.epochs,
        validation_data=(_scaled(validation_images), validation_labels),
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, restore_best_weights=True
            )
        ],
        verbose=1 if sys.stdout.isatty() else 2,
    )

    # ---- evaluate ---------------------------------------------------------------------
    probabilities = model.predict(_scaled(mnist.test_images), batch_size=500, verbose=0)
    predicted = probabilities.argmax(axis=1)
    confusion = _confusion(mnist.test_labels, predicted)
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
    epochs_run = len(history.history["loss"])
    metrics = {
        "name": "digits-cnn",
        "version": datetime.datetime.now(datetime.UTC).strftime("%Y.%m.%d-%H%M"),
        "test_accuracy": test_accuracy,
        "test_images": len(mnist.test_labels),
        "per_class_accuracy": {
            str(digit): float(confusion[digit, digit] / max(confusion[digit].sum(), 1))
            for digit in range(10)
        },
        "confusion_matrix": confusion.tolist(),
        "canvas": canvas,
        "validation_accuracy": float(
            history.history["val_accuracy"][-1 - _best_offset(history, config)]
        ),
        "epochs": epochs_run,
        "history": {
            key: [float(value) for value in values] for key, values in history.history.items()
        },
        "wall_time_s": round(time.monotonic() - started, 1),
        "config": dataclasses.asdict(config),
        "data_sha256": mnist.sha256,
        "versions": _versions(),
        "parameters": int(inference_model.count_params()),
    }
    (out / METRICS_PATH.name).write_text(json.dumps(metrics, indent=2) + "\n")
    _plot(history.history, confusion, out)
    print(f"wrote {out}/ in {metrics['wall_time_s']:.0f} s", flush=True)
    return 0


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


def _scaled(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """uint8 (N, 28, 28) to float (N, 28, 28, 1) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., None]


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow."""
    import keras

    keras.utils.set_random_seed(seed)


def _confusion(labels: NDArray[np.uint8], predicted: NDArray[Any]) -> NDArray[np.int64]:
    """Rows: true digit; columns: predicted digit."""
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


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


def _versions() -> dict[str, str]:
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


def _plot(history: dict[str, list[float]], confusion: NDArray[np.int64], out: Path) -> None:
    """Draw the learning curves and the confusion matrix for the README."""
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
    for row in range(10):
        for column in range(10):
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
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted",
        ylabel="true",
        title="Confusion (MNIST test)",
    )
    figure.colorbar(shown, ax=axes, label="log(1 + count)")
    figure.tight_layout()
    figure.savefig(out / "confusion.png", dpi=100)
    plt.close(figure)
