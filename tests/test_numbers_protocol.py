"""The v2 prediction object on every route: numbers, "not a digit", boxes, live growth.

A real server reads numbers drawn with the test pen paths: as pictures over HTTP (raw,
multipart, JSON), binary frames and text snapshots, and as strokes and ink over the socket.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import TIMEOUT_S, RunningServer
from tests.drawing import DIGIT_PATHS, Point, draw_strokes, encode
from tests.predictions import NOT_DIGIT_THRESHOLD, assert_number, assert_prediction_object
from tests.test_server_ws import answer_to, connected, metric

WIDTH, HEIGHT = 900, 300
LINE_WIDTH = 16.0
DIGIT_SIZE = 200.0
STEP = 150.0  # From one digit's left edge to the next one's: a gap of about 40 px.
PNG = {"Content-Type": "image/png"}
# Pen strokes that are not digits, in a unit box.
LETTER_A = [[(0.1, 0.95), (0.5, 0.05), (0.9, 0.95)], [(0.28, 0.6), (0.72, 0.6)]]
SCRIBBLE = [[(0.1 + 0.8 * (step % 2), 0.1 + 0.8 * step / 11) for step in range(12)]]


def number_strokes(text: str, left: float = 40.0, top: float = 50.0) -> list[list[Point]]:
    """The pen strokes of a number's digits side by side, in canvas pixels."""
    strokes = []
    for place, character in enumerate(text):
        for path in DIGIT_PATHS[int(character)]:
            x0 = left + place * STEP
            strokes.append([(x0 + x * DIGIT_SIZE * 0.6, top + y * DIGIT_SIZE) for x, y in path])
    return strokes


def shape_strokes(paths: list[list[Point]], size: float = DIGIT_SIZE) -> list[list[Point]]:
    """A shape's unit-box paths placed on the canvas."""
    return [[(300 + x * size, 50 + y * size) for x, y in path] for path in paths]


def png_of(strokes: list[list[Point]], width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The canvas of the strokes as PNG bytes, black on white."""
    return encode(draw_strokes(strokes, width, height, LINE_WIDTH))


def strokes_message(seq: int, strokes: list[list[Point]]) -> str:
    """A v1 strokes message on the test canvas."""
    return json.dumps(
        {"type": "strokes", "seq": seq, "width": WIDTH, "height": HEIGHT,
         "line_width": LINE_WIDTH, "strokes": strokes}
    )


def ink_message(seq: int, stroke: int, points: list[Point]) -> str:
    """An ink message on the test canvas."""
    return json.dumps(
        {"type": "ink", "seq": seq, "width": WIDTH, "height": HEIGHT, "line_width": LINE_WIDTH,
         "stroke": stroke, "points": points}
    )


def assert_reads(answer: dict[str, Any], text: str) -> None:
    """The answer is a valid v2 object that reads `text` (a number: no single digit)."""
    assert_prediction_object(answer)
    assert answer["number"]["text"] == text, answer["number"]
    if len(text) > 1:
        assert answer["digit"] is None and answer["not_digit"] >= NOT_DIGIT_THRESHOLD


def assert_boxes_hold(answer: dict[str, Any], strokes: list[list[Point]], text: str) -> None:
    """Each character's box holds its own digit's strokes, in canvas pixels."""
    per_digit = [len(DIGIT_PATHS[int(character)]) for character in text]
    first = 0
    for count, piece in zip(per_digit, answer["number"]["digits"], strict=True):
        x0, y0, x1, y1 = piece["box"]
        for stroke in strokes[first : first + count]:
            for x, y in stroke:
                assert x0 <= x <= x1 and y0 <= y <= y1
        first += count


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client for the shared server."""
    with httpx.Client(base_url=server.http_url, timeout=TIMEOUT_S) as http:
        yield http


def predict(client: httpx.Client, **request: Any) -> dict[str, Any]:
    """POST /api/predict; the JSON answer of a 200."""
    response = client.post("/api/predict", **request)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("body", ["raw", "multipart", "json"])
def test_a_number_over_http(client: httpx.Client, body: str) -> None:
    """A picture of 2047 reads 2047 whatever the body, with boxes in its own pixels."""
    strokes = number_strokes("2047")
    picture = png_of(strokes)
    if body == "raw":
        answer = predict(client, content=picture, headers=PNG)
    elif body == "multipart":
        answer = predict(client, files={"image": ("n.png", picture, "image/png")})
    else:
        answer = predict(client, json={"image": base64.b64encode(picture).decode()})
    assert_reads(answer, "2047")
    assert_boxes_hold(answer, strokes, "2047")


def test_boxes_of_a_large_picture_are_in_its_own_pixels(client: httpx.Client) -> None:
    """A picture reduced before reading (over 1024 px wide) still gets boxes in its pixels."""
    strokes = [[(x * 3, y * 3) for x, y in stroke] for stroke in number_strokes("31")]
    picture = encode(draw_strokes(strokes, WIDTH * 3, HEIGHT * 3, LINE_WIDTH * 3))
    answer = predict(client, content=picture, headers=PNG)
    assert_reads(answer, "31")
    boxes = [piece["box"] for piece in answer["number"]["digits"]]
    # The second digit lies at x 570-930 of 2,700; in the reduced map it would be at 190-310.
    assert boxes[1][0] > 500, "boxes are in the picture's pixels, not the reduced ones"
    for (x0, _, x1, _), stroke in zip(boxes, (strokes[0], strokes[1]), strict=True):
        middle = sum(x for x, _ in stroke) / len(stroke)
        assert x0 < middle < x1


def test_a_single_digit_is_a_one_character_number(client: httpx.Client) -> None:
    """One digit: `digit` set, and the number is that digit with the box of its ink."""
    strokes = number_strokes("4")
    answer = predict(client, content=png_of(strokes), headers=PNG)
    assert_reads(answer, "4")
    assert answer["digit"] == 4 and answer["not_digit"] < NOT_DIGIT_THRESHOLD
    (piece,) = answer["number"]["digits"]
    assert piece["digit"] == 4
    assert_boxes_hold(answer, strokes, "4")


@pytest.mark.parametrize("shape", [LETTER_A, SCRIBBLE], ids=["letter A", "scribble"])
def test_a_letter_or_a_scribble_is_rejected(client: httpx.Client, shape: list[list[Point]]) -> None:
    """Not a digit: `digit` and `confidence` null, `not_digit` over the threshold, text `?`."""
    answer = predict(client, content=png_of(shape_strokes(shape)), headers=PNG)
    assert_prediction_object(answer)
    assert answer["digit"] is None and answer["confidence"] is None
    assert answer["not_digit"] >= NOT_DIGIT_THRESHOLD
    assert set(answer["number"]["text"]) == {"?"}


def test_an_empty_canvas_has_no_number(client: httpx.Client) -> None:
    """Empty: `not_digit` and `number` null, as every other field."""
    answer = predict(client, content=png_of([]), headers=PNG)
    assert answer["empty"] is True
    assert answer["not_digit"] is None and answer["number"] is None


def test_model_and_hello_state_the_threshold(client: httpx.Client, server: RunningServer) -> None:
    """`/api/model` and the hello state the committed model's operating point."""
    model = client.get("/api/model").json()
    assert model["not_digit_threshold"] == pytest.approx(NOT_DIGIT_THRESHOLD)
    assert 0.0 < NOT_DIGIT_THRESHOLD < 1.0


async def test_hello_states_the_threshold(server: RunningServer) -> None:
    """The hello carries `not_digit_threshold`."""
    async with connected(server) as (_, hello):
        assert hello["not_digit_threshold"] == pytest.approx(NOT_DIGIT_THRESHOLD)


async def test_a_number_over_every_socket_message(server: RunningServer) -> None:
    """Binary frame, text snapshot and strokes message all read the same number."""
    strokes = number_strokes("519")
    picture = png_of(strokes)
    async with connected(server) as (socket, _):
        await socket.send(picture)
        assert_reads(await answer_to(socket, 0), "519")
        data_url = "data:image/png;base64," + base64.b64encode(picture).decode()
        await socket.send(json.dumps({"type": "snapshot", "seq": 1, "image": data_url}))
        assert_reads(await answer_to(socket, 1), "519")
        await socket.send(strokes_message(2, strokes))
        answer = await answer_to(socket, 2)
        assert_reads(answer, "519")
        assert_boxes_hold(answer, strokes, "519")


async def test_the_number_grows_stroke_by_stroke_over_ink(server: RunningServer) -> None:
    """Ink streamed point by point: after each digit, the number read so far."""
    text = "2047"
    strokes = number_strokes(text)
    per_digit = [len(DIGIT_PATHS[int(character)]) for character in text]
    readings = []
    async with connected(server) as (socket, _):
        seq, stroke = -1, 0
        for count in per_digit:
            for points in strokes[stroke : stroke + count]:
                for start in range(0, len(points), 5):
                    seq += 1
                    await socket.send(ink_message(seq, stroke, points[start : start + 5]))
                stroke += 1
            answer = await answer_to(socket, seq)
            assert_prediction_object(answer)
            readings.append(answer["number"]["text"])
        assert_boxes_hold(answer, strokes, text)
        # Undo takes the 7's stroke away, clear takes everything.
        await socket.send(json.dumps({"type": "undo", "seq": seq + 1}))
        assert_reads(await answer_to(socket, seq + 1), "204")
        await socket.send(json.dumps({"type": "clear", "seq": seq + 2}))
        cleared = await answer_to(socket, seq + 2)
        assert cleared["empty"] is True and cleared["number"] is None
    assert readings == ["2", "20", "204", "2047"]


async def test_an_x_streamed_as_ink_is_not_eleven(server: RunningServer) -> None:
    """An X in two crossing strokes, each a good 1 alone, is `?` over ink; the same two
    strokes apart read 11."""
    crossed = shape_strokes([[(0.1, 0.05), (0.75, 0.95)], [(0.75, 0.05), (0.1, 0.95)]])
    apart = [crossed[0], [(x + 300.0, y) for x, y in crossed[1]]]
    async with connected(server) as (socket, _):
        seq = -1
        for strokes, text in ((crossed, "?"), (apart, "11")):
            seq += 1
            await socket.send(json.dumps({"type": "clear", "seq": seq}))
            await answer_to(socket, seq)
            for index, points in enumerate(strokes):
                for start in range(0, len(points), 5):
                    seq += 1
                    await socket.send(ink_message(seq, index, points[start : start + 5]))
            answer = await answer_to(socket, seq)
            assert_prediction_object(answer)
            assert answer["number"]["text"] == text


async def test_a_drawing_of_many_pieces_is_answered(server: RunningServer) -> None:
    """Sixty dots and dashes (too many pieces to split) are one `?`, and the socket goes on."""
    dashes = [[(20.0 + 14 * index, 40.0 + 3 * (index % 7)), (26.0 + 14 * index, 60.0)]
              for index in range(60)]
    async with connected(server) as (socket, _):
        await socket.send(strokes_message(0, dashes))
        answer = await answer_to(socket, 0)
        assert_prediction_object(answer)
        assert answer["digit"] is None
        await socket.send(strokes_message(1, number_strokes("7")))
        assert_reads(await answer_to(socket, 1), "7")


def test_input_png_still_shows_the_whole_drawing(client: httpx.Client) -> None:
    """`?include_input=1` on a number gives the 28x28 of the whole drawing."""
    answer = predict(
        client, content=png_of(number_strokes("12")), headers=PNG, params={"include_input": 1}
    )
    assert_number(answer["number"])
    prefix = "data:image/png;base64,"
    assert answer["input_png"].startswith(prefix)
    seen = Image.open(io.BytesIO(base64.b64decode(answer["input_png"][len(prefix):])))
    assert seen.size == (28, 28)


async def stream_strokes(
    socket: Any, strokes: list[list[Point]], per_message: int
) -> list[tuple[int, Any]]:
    """Send strokes as ink, `per_message` points at a time, each answered before the next;
    returns, per stroke, its last message's seq and answer."""
    ends = []
    seq = -1
    for index, points in enumerate(strokes):
        for start in range(0, len(points), per_message):
            seq += 1
            await socket.send(ink_message(seq, index, points[start : start + per_message]))
            answer = await answer_to(socket, seq)
        ends.append((seq, answer))
    return ends


async def read_fresh(server: RunningServer, strokes: list[list[Point]], **canvas: Any) -> Any:
    """What a new connection answers to the strokes sent at once (nothing kept from before)."""
    async with connected(server) as (socket, _):
        message = json.loads(strokes_message(0, strokes))
        message.update(canvas)
        await socket.send(json.dumps(message))
        return await answer_to(socket, 0)


async def test_kept_readings_give_what_a_fresh_reading_gives(server: RunningServer) -> None:
    """A number drawn point by point, with an undo, a redrawn stroke and a turned canvas,
    reads exactly as the same final strokes read afresh: rows kept from earlier splits
    are only ever the rows of the same strokes, and once split, the growing number is read
    whole and split in one pass (its whole reading, of four strokes, taken from its group of
    every stroke)."""
    kept = 'digits_split_groups_total\\{source="kept"\\}'
    one_pass = 'digits_splits_total\\{passes="one"\\}'
    kept_before, one_pass_before = await metric(server, kept), await metric(server, one_pass)
    strokes = number_strokes("3581")
    async with connected(server) as (socket, _):
        answers = await stream_strokes(socket, strokes, 3)
        (seq, answer), four = answers[-1], answers[3][1]
        grown = answer["number"]
        # Undo the 1 and draw a 7 in its place: same stroke index, a different stroke.
        seven = number_strokes("0007")[-1]
        await socket.send(json.dumps({"type": "undo", "seq": seq + 1}))
        await answer_to(socket, seq + 1)
        await socket.send(ink_message(seq + 2, len(strokes) - 1, seven))
        redrawn = (await answer_to(socket, seq + 2))["number"]
        # The canvas turns to half its size: the ink is scaled, and read again.
        message = json.loads(ink_message(seq + 3, len(strokes), []))
        message.update(width=WIDTH // 2, height=HEIGHT // 2, line_width=LINE_WIDTH / 2)
        await socket.send(json.dumps(message))
        turned = (await answer_to(socket, seq + 3))["number"]
    assert grown["text"] == "3581"
    assert grown == (await read_fresh(server, strokes))["number"]
    # Four strokes: the whole drawing is the split's group of every stroke.
    fresh = await read_fresh(server, strokes[:4])
    assert four["number"] == fresh["number"]
    assert four["not_digit"] == pytest.approx(fresh["not_digit"], abs=1e-5)
    assert four["probabilities"] == pytest.approx(fresh["probabilities"], abs=1e-5)
    assert redrawn["text"] == "3587"
    assert redrawn == (await read_fresh(server, [*strokes[:-1], seven]))["number"]
    assert turned["text"] == "3587"
    half = [[(x / 2, y / 2) for x, y in stroke] for stroke in [*strokes[:-1], seven]]
    fresh_half = (await read_fresh(
        server, half, width=WIDTH // 2, height=HEIGHT // 2, line_width=LINE_WIDTH / 2
    ))["number"]
    assert turned["text"] == fresh_half["text"]
    assert [x for d in turned["digits"] for x in d["box"]] == pytest.approx(
        [x for d in fresh_half["digits"] for x in d["box"]], abs=0.2
    )
    assert await metric(server, kept) > kept_before, "rows of unchanged groups were kept"
    assert await metric(server, one_pass) > one_pass_before, "a growing number was read in one pass"


async def test_a_2_and_a_1_that_touch_are_split_when_written_as_ink(
    server: RunningServer,
) -> None:
    """A 2 and a 1 written so close that they touch read as one digit, a 2, but not surely:
    ink of several strokes is then split, so the number grows to 21 under the pen, whole
    strokes sent at once read the same, and `digit` is still the whole drawing's 2."""
    from tests.test_numbers import ONE, TWO, written

    strokes = written(TWO, ONE, gap=-0.15, slant=0.2)
    async with connected(server) as (socket, _):
        answer = (await stream_strokes(socket, strokes, 4))[-1][1]
    assert_prediction_object(answer)
    assert answer["number"]["text"] == "21"
    assert answer["digit"] == 2 and answer["not_digit"] < NOT_DIGIT_THRESHOLD
    fresh = await read_fresh(server, strokes)
    assert fresh["number"]["text"] == "21"
