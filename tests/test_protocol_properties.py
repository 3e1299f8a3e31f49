"""Message parsing on arbitrary input: a valid snapshot or a typed `ProtocolError`, nothing else.

Arbitrary text frames, arbitrary JSON values, objects shaped like our messages, arbitrary
bytes and sequences of them on one connection; then the decoding that follows parsing, on
arbitrary and corrupted pictures and strokes: a valid model input or an `ImageError`.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, get_args

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from server.config import Settings
from server.decoding import DecodeLimits, prepare
from server.images import ImageError
from server.protocol import (
    MAX_CANVAS_SIDE,
    MAX_COORDINATE,
    MAX_LINE_WIDTH,
    EncodedSnapshot,
    ErrorCode,
    Limits,
    MessageParser,
    ProtocolError,
    Snapshot,
    StrokesSnapshot,
    error_message,
)

LIMITS = Limits(max_message_bytes=4096, max_pixels=4096 * 4096, max_stroke_points=50)
# Small picture limits keep each decoding example fast.
DECODING = Settings(max_message_bytes=64 * 1024, max_pixels=256 * 256, max_stroke_points=50)
PICTURE_LIMITS = DecodeLimits(DECODING.max_message_bytes, DECODING.max_pixels)
DECODING_LIMITS = Limits(
    DECODING.max_message_bytes, DECODING.max_pixels, DECODING.max_stroke_points
)
ERROR_CODES = frozenset(get_args(ErrorCode))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
# Values a field might hold: mostly plausible, sometimes anything at all.
numbers = st.integers(-10, 5000) | st.floats(allow_nan=True, allow_infinity=True)
points = st.lists(numbers | json_scalars, min_size=0, max_size=3) | json_scalars
message_fields = {
    "seq": st.integers(-3, 2**70) | json_values,
    "image": st.text(max_size=40) | json_values,
    "width": numbers | json_values,
    "height": numbers | json_values,
    "line_width": numbers | json_values,
    "strokes": st.lists(st.lists(points, max_size=8), max_size=8) | json_values,
}
shaped_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["snapshot", "strokes"]) | st.text(max_size=10) | json_values},
    optional=message_fields,
)
frames = st.text(max_size=200) | st.binary(max_size=200) | json_values.map(json.dumps)


def check_outcome(parser: MessageParser, frame: str | bytes) -> Snapshot | ProtocolError:
    """Parse a frame; whatever the outcome, it must be one the protocol allows."""
    previous = parser.last_seq
    limits = parser.limits
    try:
        snapshot = parser.parse(frame)
    except ProtocolError as error:
        assert error.code in ERROR_CODES
        if isinstance(frame, bytes):
            assert error.seq == previous + 1
        else:
            assert error.seq is None or (type(error.seq) is int and error.seq > previous)
        sent = json.loads(error_message(error.code, error.message, error.seq))
        assert sent == {
            "type": "error", "seq": error.seq, "code": error.code, "message": error.message
        }
        return error
    assert type(snapshot.seq) is int and parser.last_seq == snapshot.seq
    if isinstance(frame, bytes):
        assert snapshot == EncodedSnapshot(previous + 1, frame)
        return snapshot
    assert snapshot.seq > previous
    if isinstance(snapshot, EncodedSnapshot):
        assert isinstance(snapshot.image, str)
        return snapshot
    assert 1 <= snapshot.width <= MAX_CANVAS_SIDE and 1 <= snapshot.height <= MAX_CANVAS_SIDE
    assert snapshot.width * snapshot.height <= limits.max_pixels
    assert 0 < snapshot.line_width <= MAX_LINE_WIDTH
    assert sum(len(stroke) for stroke in snapshot.strokes) <= limits.max_stroke_points
    for stroke in snapshot.strokes:
        for point in stroke:
            assert len(point) == 2
            assert all(type(value) is float and math.isfinite(value) for value in point)
            assert all(abs(value) <= MAX_COORDINATE for value in point)
    return snapshot


@settings(deadline=None)
@given(st.text())
def test_arbitrary_text_frames(frame: str) -> None:
    """Any text frame is a snapshot or a typed error."""
    check_outcome(MessageParser(LIMITS), frame)


@settings(deadline=None)
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    """Any JSON value, NaN and Infinity included, is a snapshot or a typed error."""
    outcome = check_outcome(MessageParser(LIMITS), json.dumps(value))
    if not isinstance(value, dict):
        assert isinstance(outcome, ProtocolError) and outcome.code in ("bad_message", "too_large")


@settings(deadline=None, max_examples=300)
@given(shaped_messages)
def test_messages_shaped_like_ours(message: dict[str, Any]) -> None:
    """Objects with our message's fields, holding anything, are snapshots or typed errors."""
    check_outcome(MessageParser(LIMITS), json.dumps(message))


@settings(deadline=None)
@given(st.integers(-1, 100), st.binary(max_size=LIMITS.max_message_bytes + 10))
def test_arbitrary_bytes(previous: int, frame: bytes) -> None:
    """A binary frame takes the next seq: a snapshot of its bytes, or `too_large` over the limit."""
    parser = MessageParser(LIMITS)
    parser.last_seq = previous
    outcome = check_outcome(parser, frame)
    too_large = len(frame) > LIMITS.max_message_bytes
    assert isinstance(outcome, ProtocolError) == too_large
    assert outcome.seq == previous + 1


@settings(deadline=None)
@given(st.lists(frames | shaped_messages.map(json.dumps), max_size=12))
def test_sequences_of_frames_keep_seqs_increasing(sequence: list[str | bytes]) -> None:
    """On one connection, accepted seqs strictly increase whatever arrives in between."""
    parser = MessageParser(LIMITS)
    accepted = []
    for frame in sequence:
        outcome = check_outcome(parser, frame)
        if not isinstance(outcome, ProtocolError):
            accepted.append(outcome.seq)
    assert accepted == sorted(set(accepted))


# --- after parsing: decoding what was accepted ------------------------------------------


@contextmanager
def no_preprocessing_failures() -> Iterator[None]:
    """Fail if `prepare` had to turn a preprocessing crash into an error."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("server.decoding")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage() for record in records] == []


def check_decoding(snapshot: Snapshot) -> None:
    """Decoding an accepted snapshot gives a valid model input, None (no ink) or an ImageError."""
    picture = snapshot if isinstance(snapshot, StrokesSnapshot) else snapshot.image
    with no_preprocessing_failures():
        try:
            prepared = prepare(picture, PICTURE_LIMITS, include_input=True)
        except ImageError as error:
            assert error.code in ("bad_image", "too_large")
            return
    if prepared.model_input is not None:
        assert prepared.model_input.shape == (28, 28)
        assert np.isfinite(prepared.model_input).all()
        assert prepared.model_input.min() >= 0.0 and prepared.model_input.max() <= 1.0
    assert prepared.input_png is not None and prepared.input_png.startswith("data:image/png")


def picture_bytes(seed: int, width: int, height: int, image_format: str) -> bytes:
    """A small noisy picture in one of the formats browsers send."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=image_format)
    return buffer.getvalue()


@st.composite
def corrupted_pictures(draw: st.DrawFn) -> bytes:
    """A real picture with a few bytes changed, cut short or both."""
    data = bytearray(
        picture_bytes(
            draw(st.integers(0, 2**32 - 1)),
            draw(st.integers(1, 40)),
            draw(st.integers(1, 40)),
            draw(st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "BMP"])),
        )
    )
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(deadline=None, max_examples=150)
@given(st.binary(max_size=300) | corrupted_pictures())
def test_binary_frames_decode_or_fail_cleanly(data: bytes) -> None:
    """Arbitrary and corrupted picture bytes decode to a valid input or an ImageError."""
    snapshot = MessageParser(LIMITS).parse(data)
    check_decoding(snapshot)


@settings(deadline=None, max_examples=150)
@given(
    st.text(max_size=60)
    | (st.binary(max_size=300) | corrupted_pictures()).map(
        lambda data: "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    )
)
def test_text_snapshots_decode_or_fail_cleanly(image: str) -> None:
    """Any `image` text, data URL or not, decodes to a valid input or an ImageError."""
    snapshot = MessageParser(DECODING_LIMITS).parse(
        json.dumps({"type": "snapshot", "seq": 0, "image": image})
    )
    check_decoding(snapshot)


coordinates = st.floats(-MAX_COORDINATE, MAX_COORDINATE) | st.integers(-300, 300)


@settings(deadline=None, max_examples=100)
@given(
    width=st.integers(1, 256),
    height=st.integers(1, 256),
    line_width=st.floats(0.01, MAX_LINE_WIDTH) | st.integers(1, 200),
    strokes=st.lists(st.lists(st.tuples(coordinates, coordinates), max_size=10), max_size=5),
)
def test_strokes_draw_or_fail_cleanly(
    width: int, height: int, line_width: float, strokes: list[list[tuple[float, float]]]
) -> None:
    """Any valid strokes message, however wild its points, draws into a valid input."""
    message = {
        "type": "strokes", "seq": 0, "width": width, "height": height,
        "line_width": line_width, "strokes": strokes,
    }
    snapshot = check_outcome(MessageParser(DECODING_LIMITS), json.dumps(message))
    assert isinstance(snapshot, StrokesSnapshot)
    check_decoding(snapshot)
