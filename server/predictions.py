"""The prediction object (v2), the same over HTTP and WebSocket.

`{"digit": int | null, "confidence": float | null, "probabilities": [10 floats] | null,
"empty": bool, "not_digit": float | null, "number": {...} | null}`, plus `"input_png"` (a PNG
data URL of the 28x28 input) when asked for. `digit` is null when the drawing is empty or
rejected as one digit; `number` reads it left to right (`model/numbers.py`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model.numbers import DIGITS, NumberReading
from model.preprocess import FIELD_SIZE, FloatArray
from server.png import grey_png


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one picture; nothing but `input_png` when it has no ink.

    `probabilities` are the ten digits' (summing to 1); `not_digit` how likely the whole
    picture is not one digit, and `rejected` whether that reached the server's threshold.
    """

    probabilities: tuple[float, ...] | None
    not_digit: float | None = None
    rejected: bool = False
    number: NumberReading | None = None
    input_png: str | None = None

    @property
    def empty(self) -> bool:
        """Whether the picture had no ink."""
        return self.probabilities is None

    @property
    def digit(self) -> int | None:
        """The most probable digit, unless the picture is empty or not one digit."""
        if self.probabilities is None or self.rejected:
            return None
        return max(range(len(self.probabilities)), key=self.probabilities.__getitem__)

    def as_json(self) -> dict[str, Any]:
        """The prediction object of the protocol."""
        digit = self.digit
        answer: dict[str, Any] = {
            "digit": digit,
            "confidence": None if digit is None else self.probabilities[digit],  # type: ignore[index]
            "probabilities": None if self.probabilities is None else list(self.probabilities),
            "empty": self.empty,
            "not_digit": self.not_digit,
            "number": None if self.number is None else self.number.as_json(),
        }
        if self.input_png is not None:
            answer["input_png"] = self.input_png
        return answer


def make_prediction(
    row: NDArray[np.float32] | None,
    threshold: float = 1.0,
    number: NumberReading | None = None,
    input_png: str | None = None,
) -> Prediction:
    """A prediction from the model's output for one whole picture (None: no ink).

    The row holds the ten digits and, for a model that has it, "not a digit"; the digits'
    share is renormalised so that their probabilities sum to 1 whatever the eleventh says.
    """
    if row is None:
        return Prediction(None, input_png=input_png)
    digits = np.asarray(row[:DIGITS], dtype=np.float64)
    total = float(digits.sum())
    shares = digits / total if total > 0 else np.full(DIGITS, 1.0 / DIGITS)
    not_digit = float(row[DIGITS]) if len(row) > DIGITS else 0.0
    return Prediction(
        tuple(float(value) for value in shares),
        not_digit,
        not_digit >= threshold,
        number,
        input_png,
    )


def input_png(model_input: FloatArray | None) -> str:
    """The 28x28 input as a PNG data URL, ink white on black as in MNIST (blank if None)."""
    if model_input is None:
        model_input = np.zeros((FIELD_SIZE, FIELD_SIZE), dtype=np.float32)
    pixels = np.clip(np.rint(model_input * 255.0), 0, 255).astype(np.uint8)
    return "data:image/png;base64," + base64.b64encode(grey_png(pixels)).decode("ascii")
