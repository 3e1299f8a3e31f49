"""Protocol v2 ink: parsing, the per-connection drawing, and the live channel on a real server."""

from __future__ import annotations

import json
from array import array
from typing import Any

import pytest

from server.ink import Drawing
from server.protocol import (
    InkClear,
    InkPoints,
    InkUndo,
    Limits,
    MessageParser,
    ProtocolError,
    StrokesSnapshot,
)
from tests.conftest import RunningServer
from tests.pictures import CANVAS_SIZE, LINE_WIDTH, digit_strokes, strokes_message
from tests.test_server_ws import answer_to, assert_prediction, assert_recovers, connected

LIMITS = Limits(max_message_bytes=10_000, max_pixels=4096 * 4096, max_stroke_points=10)


def ink(seq: int, stroke: int, points: list[list[float]], **overrides: object) -> str:
    """An ink message on the test canvas."""
    message: dict[str, object] = {
        "type": "ink",
        "seq": seq,
        "width": CANVAS_SIZE,
        "height": CANVAS_SIZE,
        "line_width": LINE_WIDTH,
        "stroke": stroke,
        "points": points,
    }
    message.update(overrides)
    return json.dumps(message)


def ink_points(seq: int, stroke: int, *points: tuple[float, float], size: int = 100) -> InkPoints:
    return InkPoints(seq, size, size, 4.0, stroke, tuple(points))


def strokes_of(drawing: Drawing) -> tuple[tuple[tuple[float, float], ...], ...]:
    """The drawing's strokes, read back from what a decode process is sent."""
    packed = drawing.packed()
    values = array("f", packed.points)
    strokes, start = [], 0
    for length in packed.lengths:
        stroke = values[2 * start : 2 * (start + length)]
        strokes.append(tuple(zip(stroke[0::2], stroke[1::2], strict=True)))
        start += length
    return tuple(strokes)


def refusal(drawing: Drawing, edit: InkPoints) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        drawing.apply(edit)
    return caught.value


# --- parsing and the drawing --------------------------------------------------------------


def test_ink_undo_and_clear_messages_parse() -> None:
    """ink, undo and clear become their edits, with float points."""
    parser = MessageParser(LIMITS)
    assert parser.parse(ink(0, 0, [[1, 2], [3.5, 4]])) == InkPoints(
        0, CANVAS_SIZE, CANVAS_SIZE, LINE_WIDTH, 0, ((1.0, 2.0), (3.5, 4.0))
    )
    assert parser.parse(json.dumps({"type": "undo", "seq": 1})) == InkUndo(1)
    assert parser.parse(json.dumps({"type": "clear", "seq": 2})) == InkClear(2)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"stroke": -1}, "bad_message"),
        ({"stroke": 1.5}, "bad_message"),
        ({"stroke": True}, "bad_message"),
        ({"points": "nope"}, "bad_message"),
        ({"points": [[1, 2, 3]]}, "bad_message"),
        ({"points": [[1, "2"]]}, "bad_message"),
        ({"width": 0}, "bad_message"),
        ({"line_width": 0}, "bad_message"),
        ({"points": [[1, 1]] * 11}, "too_large"),
    ],
)
def test_malformed_ink_is_refused_with_its_seq(overrides: dict[str, object], code: str) -> None:
    """A malformed ink message gets its error code and keeps its seq."""
    with pytest.raises(ProtocolError) as caught:
        message = {**json.loads(ink(4, 0, [[1, 1]])), **overrides}
        MessageParser(LIMITS).parse(json.dumps(message))
    assert (caught.value.code, caught.value.seq) == (code, 4)


def test_points_continue_a_stroke_or_start_the_next() -> None:
    """The stroke index continues the last stroke or starts the next one."""
    drawing = Drawing(max_points=10)
    drawing.apply(ink_points(0, 0, (1, 1), (2, 2)))
    drawing.apply(ink_points(1, 0, (3, 3)))
    drawing.apply(ink_points(2, 1, (5, 5)))
    assert strokes_of(drawing) == (((1, 1), (2, 2), (3, 3)), ((5, 5),))
    assert (drawing.strokes, drawing.points) == (2, 4)


@pytest.mark.parametrize("stroke", [0, 3])
def test_stroke_out_of_turn_is_refused_and_changes_nothing(stroke: int) -> None:
    """A stroke index that neither continues nor starts the next stroke is bad_message."""
    drawing = Drawing(max_points=10)
    drawing.apply(ink_points(0, 0, (1, 1)))
    drawing.apply(ink_points(1, 1, (2, 2)))
    error = refusal(drawing, ink_points(2, stroke, (9, 9)))
    assert (error.code, error.seq) == ("bad_message", 2)
    assert strokes_of(drawing) == (((1, 1),), ((2, 2),))


def test_first_stroke_must_be_zero() -> None:
    """On an empty drawing only stroke 0 may start."""
    assert refusal(Drawing(max_points=10), ink_points(0, 1, (1, 1))).code == "bad_message"


def test_ink_over_the_point_limit_leaves_the_drawing_as_it_was() -> None:
    """Points beyond the drawing's limit are too_large, and none of them is kept."""
    drawing = Drawing(max_points=3)
    drawing.apply(ink_points(0, 0, (1, 1), (2, 2)))
    error = refusal(drawing, ink_points(1, 0, (3, 3), (4, 4)))
    assert (error.code, error.seq) == ("too_large", 1)
    assert strokes_of(drawing) == (((1, 1), (2, 2)),)
    drawing.apply(ink_points(2, 1, (3, 3)))
    assert drawing.points == 3


def test_undo_and_clear() -> None:
    """Undo removes the last stroke (nothing on an empty drawing); clear removes all."""
    drawing = Drawing(max_points=10)
    drawing.apply(InkUndo(0))
    drawing.apply(ink_points(1, 0, (1, 1), (2, 2)))
    drawing.apply(ink_points(2, 1, (3, 3)))
    drawing.apply(InkUndo(3))
    assert strokes_of(drawing) == (((1, 1), (2, 2)),)
    assert drawing.points == 2
    drawing.apply(InkClear(4))
    assert (drawing.strokes, drawing.points) == (0, 0)
    drawing.apply(ink_points(5, 0, (7, 7)))
    assert strokes_of(drawing) == (((7, 7),),)


def test_a_new_canvas_size_scales_the_ink() -> None:
    """A phone turned round: ink already drawn is scaled to the new canvas."""
    drawing = Drawing(max_points=10)
    drawing.apply(ink_points(0, 0, (10, 20), (50, 80), size=100))
    drawing.apply(InkPoints(1, 200, 50, 6.0, 0, ((90.0, 30.0),)))
    packed = drawing.packed()
    assert (packed.width, packed.height, packed.line_width) == (200, 50, 6.0)
    assert strokes_of(drawing) == (((20, 10), (100, 40), (90, 30)),)


def test_strokes_message_replaces_the_drawing() -> None:
    """A v1 strokes message (sent after a reconnect) becomes the whole drawing."""
    drawing = Drawing(max_points=10)
    drawing.apply(ink_points(0, 0, (1, 1)))
    drawing.replace(StrokesSnapshot(1, 50, 60, 3.0, (((2.0, 2.0),), ((3.0, 3.0), (4.0, 4.0)))))
    assert (drawing.packed().width, drawing.packed().height) == (50, 60)
    assert strokes_of(drawing) == (((2.0, 2.0),), ((3.0, 3.0), (4.0, 4.0)))
    drawing.apply(ink_points(2, 1, (5, 5), size=50))
    assert drawing.points == 4


# --- the live channel ------------------------------------------------------------------


def stroke_chunks(digit: int, size: int = 3) -> list[tuple[int, list[list[float]]]]:
    """A digit's strokes as (stroke index, points) chunks, as the page streams them."""
    chunks = []
    for index, stroke in enumerate(digit_strokes(digit)):
        for start in range(0, len(stroke), size):
            chunks.append((index, stroke[start : start + size]))
    return chunks


async def draw_with_ink(socket: Any, digit: int, first_seq: int = 0) -> int:
    """Stream a digit as ink messages; returns the last seq sent."""
    seq = first_seq - 1
    for stroke, points in stroke_chunks(digit):
        seq += 1
        await socket.send(ink(seq, stroke, points))
    return seq


async def test_ink_is_drawn_and_read(server: RunningServer) -> None:
    """A digit streamed as ink reads as that digit, like the same strokes message."""
    async with connected(server) as (socket, _):
        last = await draw_with_ink(socket, 7)
        answer = await answer_to(socket, last)
        assert_prediction(answer, last)
        assert answer["digit"] == 7
        await socket.send(json.dumps(strokes_message(7, last + 1)))
        whole = await answer_to(socket, last + 1)
    assert whole["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-6)


async def test_undo_and_clear_over_the_socket(server: RunningServer) -> None:
    """Undo removes the last stroke (a 4 loses its stem); clear answers empty."""
    async with connected(server) as (socket, _):
        last = await draw_with_ink(socket, 4)
        assert (await answer_to(socket, last))["digit"] == 4
        await socket.send(json.dumps({"type": "undo", "seq": last + 1}))
        undone = await answer_to(socket, last + 1)
        assert_prediction(undone, last + 1)
        await socket.send(json.dumps({"type": "clear", "seq": last + 2}))
        cleared = await answer_to(socket, last + 2)
        assert cleared["type"] == "prediction"
        assert cleared["empty"] is True and cleared["digit"] is None
        # The drawing starts again from nothing: stroke 0.
        again = await draw_with_ink(socket, 1, last + 3)
        assert (await answer_to(socket, again))["digit"] == 1


async def test_undo_of_a_four_matches_its_first_stroke(server: RunningServer) -> None:
    """After undo, the answer equals that of a drawing of the first stroke alone."""
    async with connected(server) as (socket, _):
        last = await draw_with_ink(socket, 4)
        await socket.send(json.dumps({"type": "undo", "seq": last + 1}))
        undone = await answer_to(socket, last + 1)
        first_stroke = {**strokes_message(4, last + 2), "strokes": digit_strokes(4)[:1]}
        await socket.send(json.dumps(first_stroke))
        reference = await answer_to(socket, last + 2)
    assert undone["probabilities"] == pytest.approx(reference["probabilities"], abs=1e-6)


async def test_bad_ink_is_refused_and_the_drawing_goes_on(server: RunningServer) -> None:
    """A stroke out of turn and ink over the point limit are refused; the ink is kept."""
    async with connected(server) as (socket, hello):
        last = await draw_with_ink(socket, 7)
        await socket.send(ink(last + 1, 5, [[1, 1]]))
        error = await answer_to(socket, last + 1)
        assert (error["type"], error["code"]) == ("error", "bad_message")
        limit = hello.get("max_stroke_points", 20_000)
        await socket.send(ink(last + 2, 1, [[10.0, 10.0]] * limit))
        error = await answer_to(socket, last + 2)
        assert (error["type"], error["code"]) == ("error", "too_large")
        await socket.send(ink(last + 3, 0, []))
        answer = await answer_to(socket, last + 3)
        assert_prediction(answer, last + 3)
        assert answer["digit"] == 7
        await assert_recovers(socket, server, last + 4)


async def test_pictures_do_not_touch_the_ink(server: RunningServer) -> None:
    """A PNG snapshot between ink messages leaves the drawing as it was."""
    async with connected(server) as (socket, _):
        last = await draw_with_ink(socket, 7)
        await assert_recovers(socket, server, last + 1)
        await socket.send(ink(last + 3, 0, []))
        answer = await answer_to(socket, last + 3)
    assert answer["digit"] == 7
