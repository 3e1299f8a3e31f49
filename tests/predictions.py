"""The checks every prediction object must pass, the same over HTTP and WebSocket (v2)."""

from __future__ import annotations

import math
from typing import Any

from model.inference import read_model_info

# The committed model's operating point, as the server states it in the hello.
NOT_DIGIT_THRESHOLD = read_model_info().not_digit_threshold
EMPTY = {
    "digit": None,
    "confidence": None,
    "probabilities": None,
    "empty": True,
    "not_digit": None,
    "number": None,
}


def assert_prediction_object(answer: dict[str, Any]) -> None:
    """A prediction of a picture with ink, as PROTOCOL.md's v2 object states it.

    Ten probabilities summing to 1; `digit` their argmax with its `confidence`, or both null
    exactly when `not_digit` reaches the threshold; a `number` of one character per piece,
    each with its own probabilities and a box; a one-character number is the digit.
    """
    assert set(answer) >= {"digit", "confidence", "probabilities", "empty", "not_digit", "number"}
    assert answer["empty"] is False
    probabilities = answer["probabilities"]
    assert len(probabilities) == 10
    assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-4)
    not_digit = answer["not_digit"]
    assert 0.0 <= not_digit <= 1.0
    if not_digit >= NOT_DIGIT_THRESHOLD:
        assert answer["digit"] is None and answer["confidence"] is None
    else:
        assert answer["digit"] == max(range(10), key=probabilities.__getitem__)
        assert answer["confidence"] == probabilities[answer["digit"]]
    assert_number(answer["number"])
    if answer["digit"] is not None and len(answer["number"]["digits"]) == 1:
        assert answer["number"]["text"] == str(answer["digit"])


def assert_number(number: dict[str, Any]) -> None:
    """The `number` object: its text, its confidence, and one entry per character."""
    assert set(number) == {"text", "confidence", "digits"}
    assert 0.0 <= number["confidence"] <= 1.0
    assert len(number["text"]) == len(number["digits"]) >= 1
    product = 1.0
    for character, piece in zip(number["text"], number["digits"], strict=True):
        assert character == ("?" if piece["digit"] is None else str(piece["digit"]))
        assert len(piece["probabilities"]) == 10
        assert math.isclose(sum(piece["probabilities"]), 1.0, abs_tol=1e-4)
        assert 0.0 <= piece["confidence"] <= 1.0
        x0, y0, x1, y1 = piece["box"]
        assert x0 < x1 and y0 < y1
        product *= piece["confidence"]
    assert math.isclose(number["confidence"], product, rel_tol=1e-6)
