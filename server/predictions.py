"""The prediction object, the same over HTTP and WebSocket.

`{"digit": int | null, "confidence": float | null, "probabilities": [10 floats] | null,
"empty": bool}`, plus `"input_png"` (a PNG data URL of the 28x28 input) when asked for.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.preprocess import FIELD_SIZE, FloatArray


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one picture; no probabilities when the picture has no ink."""

    probabilities: tuple[float, ...] | None
    input_png: str | None = None

    @property
    def empty(self) -> bool:
        """Whether the picture had no ink."""
        return self.probabilities is None

    @property
    def digit(self) -> int | None:
        """The most probable digit."""
        if self.probabilities is None:
            return None
        return max(range(len(self.probabilities)), key=self.probabilities.__getitem__)

    def as_json(self) -> dict[str, Any]:
        """The prediction object of the protocol."""
        answer: dict[str, Any] = {
            "digit": None, "confidence": None, "probabilities": None, "empty": True
        }
        digit = self.digit
        if self.probabilities is not None and digit is not None:
            answer.update(
                digit=digit,
                confidence=self.probabilities[digit],
                probabilities=list(self.probabilities),
                empty=False,
            )
        if self.input_png is not None:
            answer["input_png"] = self.input_png
        return answer


def make_prediction(
    probabilities: NDArray[np.float32] | None, input_png: str | None = None
) -> Prediction:
    """A prediction from the model's probabilities for one picture (None: no ink)."""
    if probabilities is None:
        return Prediction(None, input_png)
    return Prediction(tuple(float(value) for value in probabilities), input_png)


def input_png(model_input: FloatArray | None) -> str:
    """The 28x28 input as a PNG data URL, ink white on black as in MNIST (blank if None)."""
    if model_input is None:
        model_input = np.zeros((FIELD_SIZE, FIELD_SIZE), dtype=np.float32)
    pixels = np.clip(np.rint(model_input * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
