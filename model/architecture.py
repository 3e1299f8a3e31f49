"""The founding CNN, layer for layer, on 28x28x1 inputs (bright ink on dark, in [0, 1])."""

from __future__ import annotations

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
NOT_DIGIT = 10  # The index of the "not a digit" output in an eleven-class model.


def build_model(
    classes: int = NUM_CLASSES, temperature: float | None = None, deeper: bool = False
) -> keras.Model:
    """Conv 32, conv 64, max-pool, dropout, dense 128, dropout, softmax over `classes`.

    The eleventh class, when there is one, is "not a digit". With a `temperature` the last
    layer gives logits, divided by the temperature before the softmax: the same weights,
    calibrated probabilities, and every layer serializable (no Lambda). `deeper` replaces
    the two convolutions with two pairs (32, 32, pool, 64, 64, pool): a sixth of the
    parameters, as fast, and more accurate once the outputs share the model with
    "not a digit".
    """
    if temperature is None:
        head = [layers.Dense(classes, activation="softmax")]
    else:
        head = [
            layers.Dense(classes, name="logits"),
            layers.Rescaling(1.0 / temperature, name="temperature"),
            layers.Softmax(name="probabilities"),
        ]
    if deeper:
        features = [
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
        ]
    else:
        features = [
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
        ]
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            *features,
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            *head,
        ],
        name="digits_cnn",
    )
