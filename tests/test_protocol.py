"""Parsing of client WebSocket messages: types, seq bookkeeping, limits and malformed input."""

from __future__ import annotations

import json

import pytest

from server.protocol import (
    EncodedSnapshot,
    Limits,
    MessageParser,
    ProtocolError,
    StrokesSnapshot,
    error_message,
    prediction_message,
)

LIMITS = Limits(max_message_bytes=1000, max_pixels=4096 * 4096, max_stroke_points=10)


def parser() -> MessageParser:
    return MessageParser(LIMITS)


def text(**message: object) -> str:
    return json.dumps(message, ensure_ascii=False)


def strokes(**overrides: object) -> str:
    message: dict[str, object] = {
        "type": "strokes",
        "seq": 0,
        "width": 100,
        "height": 50,
        "line_width": 4,
        "strokes": [[[1, 2], [3.5, 4]], [[10, 10]]],
    }
    message.update(overrides)
    return json.dumps(message)


def refusal(parse: MessageParser, frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse.parse(frame)
    return caught.value


def test_snapshot_message() -> None:
    """A snapshot message becomes an EncodedSnapshot holding its text."""
    snapshot = parser().parse(text(type="snapshot", seq=3, image="data:image/png;base64,AAAA"))
    assert snapshot == EncodedSnapshot(3, "data:image/png;base64,AAAA")


def test_strokes_message() -> None:
    """A strokes message becomes a StrokesSnapshot with float points."""
    snapshot = parser().parse(strokes())
    assert snapshot == StrokesSnapshot(
        0, 100, 50, 4.0, (((1.0, 2.0), (3.5, 4.0)), ((10.0, 10.0),))
    )


def test_binary_frames_count_up_from_zero() -> None:
    """A first binary frame is seq 0 and each next one the previous seq + 1."""
    parse = parser()
    assert parse.parse(b"\x89PNG").seq == 0
    assert parse.parse(b"\x89PNG").seq == 1


def test_binary_frame_follows_any_message_with_a_seq() -> None:
    """A binary frame follows the seq of the previous message, accepted or rejected."""
    parse = parser()
    assert parse.parse(text(type="snapshot", seq=7, image="x")).seq == 7
    assert parse.parse(b"x").seq == 8
    assert refusal(parse, text(type="nonsense", seq=20)).seq == 20
    assert parse.parse(b"x").seq == 21


def test_message_without_a_valid_seq_does_not_move_the_sequence() -> None:
    """A message refused for its seq leaves the sequence where it was."""
    parse = parser()
    parse.parse(text(type="snapshot", seq=4, image="x"))
    assert refusal(parse, text(type="snapshot", seq="9", image="x")).seq is None
    assert parse.parse(b"x").seq == 5


@pytest.mark.parametrize(
    "seq",
    [None, 1.5, "3", True, -1, [1]],
    ids=["missing", "float", "string", "bool", "negative", "list"],
)
def test_bad_seq_is_a_bad_message(seq: object) -> None:
    """A missing, non-integer or negative seq is `bad_message` with seq null."""
    message = {"type": "snapshot", "image": "x"}
    if seq is not None:
        message["seq"] = seq  # type: ignore[assignment]
    error = refusal(parser(), json.dumps(message))
    assert (error.code, error.seq) == ("bad_message", None)


def test_seq_must_increase() -> None:
    """A seq equal to or below the previous one is refused; a larger one is fine again."""
    parse = parser()
    parse.parse(text(type="snapshot", seq=5, image="x"))
    assert refusal(parse, text(type="snapshot", seq=5, image="x")).code == "bad_message"
    assert refusal(parse, text(type="snapshot", seq=2, image="x")).code == "bad_message"
    assert parse.parse(text(type="snapshot", seq=6, image="x")).seq == 6


@pytest.mark.parametrize(
    "frame",
    ["", "{", "[1, 2]", '"snapshot"', "null", '{"type": "snapshot", "seq": NaN}', "[" * 990],
    ids=["empty", "truncated", "array", "string", "null", "nan", "deep"],
)
def test_malformed_json_is_a_bad_message(frame: str) -> None:
    """Text that is not a JSON object is `bad_message` with seq null."""
    error = refusal(parser(), frame)
    assert (error.code, error.seq) == ("bad_message", None)


def test_unknown_type_keeps_its_seq() -> None:
    """An unknown type is `bad_message` naming the message's valid seq."""
    error = refusal(parser(), text(type="draw", seq=2))
    assert (error.code, error.seq) == ("bad_message", 2)


def test_snapshot_without_image_is_a_bad_message() -> None:
    """A snapshot whose image is missing or not a string is `bad_message`."""
    assert refusal(parser(), text(type="snapshot", seq=0)).code == "bad_message"
    assert refusal(parser(), text(type="snapshot", seq=0, image=5)).code == "bad_message"


def test_oversized_frames_are_too_large() -> None:
    """Frames over the byte limit are `too_large`; a binary one keeps its assigned seq."""
    parse = parser()
    binary = refusal(parse, b"x" * 1001)
    assert (binary.code, binary.seq) == ("too_large", 0)
    textual = refusal(parse, text(type="snapshot", seq=1, image="x" * 1000))
    assert (textual.code, textual.seq) == ("too_large", None)
    assert parse.parse(b"x" * 1000).seq == 1


def test_size_counts_utf8_bytes() -> None:
    """The limit counts bytes, not characters."""
    frame = text(type="snapshot", seq=0, image="é" * 490)
    assert len(frame) < 1000 < len(frame.encode())
    assert refusal(parser(), frame).code == "too_large"


@pytest.mark.parametrize(
    "overrides",
    [
        {"width": 0},
        {"width": 4097},
        {"height": 1.5},
        {"height": None},
        {"line_width": 0},
        {"line_width": 201},
        {"line_width": "4"},
        {"strokes": "no"},
        {"strokes": [[1, 2]]},
        {"strokes": [[[1, 2, 3]]]},
        {"strokes": [[["1", 2]]]},
        {"strokes": [[[True, 2]]]},
        {"strokes": [[[1e9, 2]]]},
    ],
    ids=[
        "zero-width",
        "wide",
        "float-height",
        "no-height",
        "zero-pen",
        "wide-pen",
        "string-pen",
        "strokes-string",
        "bare-points",
        "triple",
        "string-coordinate",
        "bool-coordinate",
        "far-coordinate",
    ],
)
def test_malformed_strokes_are_bad_messages(overrides: dict[str, object]) -> None:
    """Strokes with a bad canvas, pen or point are `bad_message` naming their seq."""
    error = refusal(parser(), strokes(**overrides))
    assert (error.code, error.seq) == ("bad_message", 0)


def test_too_many_stroke_points_are_too_large() -> None:
    """More points than the limit is `too_large`."""
    error = refusal(parser(), strokes(strokes=[[[1, 1]] * 6, [[2, 2]] * 5]))
    assert (error.code, error.seq) == ("too_large", 0)


def test_canvas_over_the_pixel_limit_is_too_large() -> None:
    """A strokes canvas over max_pixels is `too_large`."""
    parse = MessageParser(Limits(1000, max_pixels=100 * 49, max_stroke_points=10))
    assert refusal(parse, strokes()).code == "too_large"


def test_empty_strokes_are_a_blank_canvas() -> None:
    """An empty strokes list is valid: a blank canvas."""
    snapshot = parser().parse(strokes(strokes=[]))
    assert isinstance(snapshot, StrokesSnapshot)
    assert snapshot.strokes == ()


def test_server_messages_are_compact_json() -> None:
    """Prediction and error messages carry their type, seq and fields."""
    prediction = json.loads(prediction_message(4, {"digit": None, "empty": True}, 1.5))
    assert prediction == {"type": "prediction", "seq": 4, "digit": None, "empty": True,
                          "latency_ms": 1.5}
    error = json.loads(error_message("bad_image", "no", None))
    assert error == {"type": "error", "seq": None, "code": "bad_image", "message": "no"}


def test_deeply_nested_json_is_a_bad_message() -> None:
    """JSON nested past Python's recursion limit is `bad_message`, not a crash."""
    deep = MessageParser(Limits(1_000_000, max_pixels=100, max_stroke_points=10))
    error = refusal(deep, "[" * 100_000 + "]" * 100_000)
    assert (error.code, error.seq) == ("bad_message", None)
