"""The protocol's messages as the client sees them (v1, and the v2 additions).

Owns parsing of what the server sends (`hello`, `prediction`, `error` on the socket, and the
prediction object and `{"error": ...}` bodies over HTTP) into typed values, and building what
the client sends (`snapshot` and `strokes` text messages; v2's `ink`, `undo` and `clear`).
Anything that does not match PROTOCOL.md raises `ProtocolError`, so callers never see a
half-parsed dictionary.

v2 prediction fields are optional, so a v1 server's answers parse too: `not_digit` and
`number` are then None. From a v2 server, `digit` is None on a non-empty picture that is not
one digit (rejected), and `number` reads the drawing left to right.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from client.errors import ProtocolError, ServerError

# A drawing: strokes of points; each point is (x, y) or (x, y, t_ms), extra items ignored.
Strokes = Sequence[Sequence[Sequence[float]]]


@dataclass(frozen=True)
class ModelInfo:
    """The model the server runs (`GET /api/model`, and `model` in the hello)."""

    name: str
    version: str
    input: tuple[int, ...]
    classes: tuple[int, ...]
    test_accuracy: float


@dataclass(frozen=True)
class Hello:
    """The server's first message on a WebSocket: its model and its limits."""

    model: ModelInfo
    debounce_ms: int
    max_wait_ms: int
    max_bytes: int
    max_pixels: int
    max_messages_per_s: int
    # v2: a picture whose `not_digit` reaches this is rejected; None from a v1 server.
    not_digit_threshold: float | None = None


@dataclass(frozen=True)
class NumberDigit:
    """One character of a number: its digit (None for `?`, a piece that is no digit)."""

    digit: int | None
    confidence: float
    probabilities: tuple[float, ...]
    box: tuple[float, float, float, float]

    def as_json(self) -> dict[str, Any]:
        """The protocol's per-character object."""
        return {
            "digit": self.digit,
            "confidence": self.confidence,
            "probabilities": list(self.probabilities),
            "box": list(self.box),
        }


@dataclass(frozen=True)
class Number:
    """The drawing read as a number, left to right (protocol v2's `number`)."""

    text: str
    confidence: float
    digits: tuple[NumberDigit, ...]

    def as_json(self) -> dict[str, Any]:
        """The protocol's `number` object."""
        return {
            "text": self.text,
            "confidence": self.confidence,
            "digits": [digit.as_json() for digit in self.digits],
        }


@dataclass(frozen=True)
class Prediction:
    """One answer: the digit, its confidence and all ten probabilities, or `empty`.

    `seq` and `latency_ms` come only over the WebSocket; `input_png` (the 28x28 PNG the
    model saw) only from `POST /api/predict?include_input=1`. `not_digit` and `number` come
    from v2 servers (None from v1 ones, and when `empty`); `digit` is then None on a
    picture that is not one digit (`rejected`).
    """

    seq: int | None
    digit: int | None
    confidence: float | None
    probabilities: tuple[float, ...] | None
    empty: bool
    latency_ms: float | None = None
    input_png: bytes | None = None
    not_digit: float | None = None
    number: Number | None = None

    @property
    def rejected(self) -> bool:
        """Whether the server found ink but no one digit in it ("not a digit")."""
        return not self.empty and self.digit is None

    def as_json(self) -> dict[str, Any]:
        """The answer as a JSON-ready dictionary (without the PNG)."""
        result: dict[str, Any] = {}
        if self.seq is not None:
            result["seq"] = self.seq
        result.update(
            digit=self.digit,
            confidence=self.confidence,
            probabilities=list(self.probabilities) if self.probabilities is not None else None,
            empty=self.empty,
            not_digit=self.not_digit,
            number=None if self.number is None else self.number.as_json(),
        )
        if self.latency_ms is not None:
            result["latency_ms"] = self.latency_ms
        return result


def parse_json_object(text: str | bytes) -> dict[str, Any]:
    """Decode a JSON object, or raise `ProtocolError`."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"the server sent invalid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"the server sent JSON that is not an object: {_preview(value)}")
    return value


def parse_hello(message: dict[str, Any]) -> Hello:
    """The typed hello, or `ProtocolError` when the first message is not one."""
    if message.get("type") != "hello":
        raise ProtocolError(f"expected a hello first, got {_preview(message)}")
    model = message.get("model")
    if not isinstance(model, dict):
        raise ProtocolError("the hello has no model object")
    return Hello(
        model=ModelInfo(
            name=_string(model, "name"),
            version=_string(model, "version"),
            input=tuple(_integers(model, "input")),
            classes=tuple(_integers(model, "classes")),
            test_accuracy=_number(model, "test_accuracy"),
        ),
        debounce_ms=_integer(message, "debounce_ms"),
        max_wait_ms=_integer(message, "max_wait_ms"),
        max_bytes=_integer(message, "max_bytes"),
        max_pixels=_integer(message, "max_pixels"),
        max_messages_per_s=_integer(message, "max_messages_per_s"),
        not_digit_threshold=_optional_number(message, "not_digit_threshold"),
    )


def parse_server_message(message: dict[str, Any]) -> Prediction | ServerError:
    """A socket `prediction` or `error` message as a `Prediction` or a `ServerError`."""
    kind = message.get("type")
    if kind == "prediction":
        seq = _integer(message, "seq")
        return parse_prediction(message, seq=seq, latency_ms=_number(message, "latency_ms"))
    if kind == "error":
        error_seq = None if message.get("seq") is None else _integer(message, "seq")
        return ServerError(_string(message, "code"), _string(message, "message"), seq=error_seq)
    raise ProtocolError(f"unexpected message from the server: {_preview(message)}")


def parse_prediction(
    body: dict[str, Any], *, seq: int | None = None, latency_ms: float | None = None
) -> Prediction:
    """The prediction object (shared by the socket and HTTP) as a `Prediction`."""
    empty = body.get("empty")
    if not isinstance(empty, bool):
        raise ProtocolError(f"prediction without a boolean 'empty': {_preview(body)}")
    input_png = _data_url_bytes(body["input_png"]) if "input_png" in body else None
    if empty:
        return Prediction(seq, None, None, None, True, latency_ms, input_png)
    probabilities = _probabilities(body)
    # v2: a picture that is not one digit has no digit and no confidence.
    digit = None if body.get("digit") is None else _digit(body, "digit")
    confidence = None if digit is None else _number(body, "confidence")
    not_digit = _optional_number(body, "not_digit")
    if not_digit is not None and not 0.0 <= not_digit <= 1.0:
        raise ProtocolError(f"prediction with not_digit {not_digit}")
    number = body.get("number")
    return Prediction(
        seq=seq,
        digit=digit,
        confidence=confidence,
        probabilities=probabilities,
        empty=False,
        latency_ms=latency_ms,
        input_png=input_png,
        not_digit=not_digit,
        number=None if number is None else parse_number(number),
    )


def parse_number(value: object) -> Number:
    """The v2 `number` object, checked: one character per digit, `?` where it is None."""
    if not isinstance(value, dict):
        raise ProtocolError(f"number is not an object: {_preview(value)}")
    text = _string(value, "text")
    digits = value.get("digits")
    if not isinstance(digits, list) or not all(isinstance(item, dict) for item in digits):
        raise ProtocolError(f"number without a list of digits: {_preview(value)}")
    parsed = tuple(_number_digit(item) for item in digits)
    expected = "".join("?" if item.digit is None else str(item.digit) for item in parsed)
    if text != expected:
        raise ProtocolError(f"number text {text!r} does not match its digits ({expected!r})")
    return Number(text=text, confidence=_number(value, "confidence"), digits=parsed)


def _number_digit(body: dict[str, Any]) -> NumberDigit:
    box = body.get("box")
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(side) for side in box):
        raise ProtocolError(f"number digit without a box of four numbers: {_preview(body)}")
    return NumberDigit(
        digit=None if body.get("digit") is None else _digit(body, "digit"),
        confidence=_number(body, "confidence"),
        probabilities=_probabilities(body),
        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
    )


def parse_http_error(status: int, text: str) -> ServerError:
    """A non-200 HTTP answer as a `ServerError` (JSON `{"error": ...}` or anything else)."""
    try:
        body = json.loads(text)
        error = body["error"]
        return ServerError(str(error["code"]), str(error["message"]), status=status)
    except (ValueError, TypeError, KeyError):
        summary = " ".join(text.split())[:200] or "no body"
        return ServerError(f"http_{status}", summary, status=status)


def snapshot_message(seq: int, image: bytes) -> str:
    """A `snapshot` text message carrying the image as bare base64."""
    encoded = base64.b64encode(image).decode("ascii")
    return json.dumps({"type": "snapshot", "seq": seq, "image": encoded})


def strokes_message(
    seq: int, strokes: Strokes, width: int, height: int, line_width: float
) -> str:
    """A `strokes` text message; points keep only x and y (a recording's times stay here)."""
    paths = [[[point[0], point[1]] for point in stroke] for stroke in strokes]
    return json.dumps(
        {
            "type": "strokes",
            "seq": seq,
            "width": width,
            "height": height,
            "line_width": line_width,
            "strokes": paths,
        }
    )


def ink_message(
    seq: int, stroke: int, points: Sequence[Sequence[float]], width: int, height: int,
    line_width: float,
) -> str:
    """A v2 `ink` text message: `points` appended to stroke number `stroke`."""
    return json.dumps(
        {
            "type": "ink",
            "seq": seq,
            "width": width,
            "height": height,
            "line_width": line_width,
            "stroke": stroke,
            "points": [[point[0], point[1]] for point in points],
        }
    )


def undo_message(seq: int) -> str:
    """A v2 `undo` text message: the last stroke of the ink goes."""
    return json.dumps({"type": "undo", "seq": seq})


def clear_message(seq: int) -> str:
    """A v2 `clear` text message: all the ink goes."""
    return json.dumps({"type": "clear", "seq": seq})


def _is_integer(value: object) -> bool:
    # JSON true/false arrive as bool, which Python counts as int.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _integer(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"expected an integer '{key}' in {_preview(body)}")
    return value


def _integers(body: dict[str, Any], key: str) -> list[int]:
    values = body.get(key)
    if not isinstance(values, list) or not all(_is_integer(value) for value in values):
        raise ProtocolError(f"expected a list of integers '{key}' in {_preview(body)}")
    return [int(value) for value in values]


def _digit(body: dict[str, Any], key: str) -> int:
    digit = _integer(body, key)
    if not 0 <= digit <= 9:
        raise ProtocolError(f"prediction with {key} {digit}")
    return digit


def _probabilities(body: dict[str, Any]) -> tuple[float, ...]:
    probabilities = body.get("probabilities")
    if not (
        isinstance(probabilities, list)
        and len(probabilities) == 10
        and all(_is_number(value) for value in probabilities)
    ):
        raise ProtocolError(f"prediction without ten probabilities: {_preview(body)}")
    return tuple(float(value) for value in probabilities)


def _optional_number(body: dict[str, Any], key: str) -> float | None:
    """A number that v1 servers do not send (absent or null: None)."""
    return None if body.get(key) is None else _number(body, key)


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not _is_number(value):
        raise ProtocolError(f"expected a number '{key}' in {_preview(body)}")
    return float(value)


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"expected a string '{key}' in {_preview(body)}")
    return value


def _data_url_bytes(value: object) -> bytes:
    """The bytes of a `data:...;base64,` URL (or of bare base64)."""
    if not isinstance(value, str):
        raise ProtocolError("input_png is not a string")
    encoded = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ProtocolError("input_png is not valid base64") from None


def _preview(value: object) -> str:
    """A short rendering of a value for error messages."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."
