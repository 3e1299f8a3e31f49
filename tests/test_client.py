"""The Python client and its CLI (`client/`), against a real server and on their own."""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from websockets.asyncio.server import ServerConnection, serve

from client import (
    ConnectionFailed,
    DigitsClient,
    Prediction,
    ServerError,
    http_url_for,
    predict_http,
)
from client.cli import main
from client.errors import ProtocolError, RecordingError
from client.messages import parse_prediction
from client.recording import SEND_INTERVAL_MS, load_recording, parse_recording, replay_schedule
from client.session import websocket_url_for
from model import METRICS_PATH
from tests.conftest import TIMEOUT_S, RunningServer, free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "client" / "examples"
EXAMPLE_DIGITS = {"zero": 0, "one": 1, "four": 4, "seven": 7}
SEVEN = EXAMPLES / "seven.json"


def draw_recording(path: Path, background: tuple[int, ...] = (255, 255, 255)) -> Image.Image:
    """The drawing of a recording as the page's canvas shows it: black, round caps and joins."""
    recording = load_recording(path)
    mode = "RGBA" if len(background) == 4 else "RGB"
    picture = Image.new(mode, (recording.width, recording.height), background)
    pen = ImageDraw.Draw(picture)
    ink = (0, 0, 0, 255) if mode == "RGBA" else (0, 0, 0)
    radius = recording.line_width / 2
    for stroke in recording.strokes:
        points = [(point.x, point.y) for point in stroke]
        if len(points) > 1:
            pen.line(points, fill=ink, width=round(recording.line_width), joint="curve")
        for x, y in points:
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=ink)
    return picture


@pytest.fixture
def seven_png(tmp_path: Path) -> Path:
    """A PNG file of the example seven on white paper."""
    path = tmp_path / "seven.png"
    draw_recording(SEVEN).save(path)
    return path


def draw_side_by_side(*paths: Path) -> Image.Image:
    """Recordings drawn one after another on a wide canvas, as a number is written."""
    drawings = [draw_recording(path) for path in paths]
    canvas = Image.new("RGB", (sum(drawing.width for drawing in drawings), drawings[0].height),
                       (255, 255, 255))
    left = 0
    for drawing in drawings:
        canvas.paste(drawing, (left, 0))
        left += drawing.width
    return canvas


@pytest.fixture
def forty_seven_png(tmp_path: Path) -> Path:
    """A PNG file of the example four and seven side by side: the number 47."""
    path = tmp_path / "forty-seven.png"
    draw_side_by_side(EXAMPLES / "four.json", SEVEN).save(path)
    return path


@pytest.fixture
def not_an_image(tmp_path: Path) -> Path:
    """A file whose bytes are no picture at all."""
    path = tmp_path / "notes.txt"
    path.write_text("these bytes are not a picture\n")
    return path


def assert_valid(prediction: Prediction) -> None:
    """The prediction object's invariants from PROTOCOL.md (a digit, not rejected)."""
    probabilities = prediction.probabilities
    assert not prediction.empty
    assert probabilities is not None and len(probabilities) == 10
    assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-3)
    assert prediction.digit == max(range(10), key=lambda digit: probabilities[digit])
    assert prediction.confidence == pytest.approx(probabilities[prediction.digit])
    # v2: a one-digit drawing reads as a one-character number, its digit.
    assert prediction.not_digit is not None and 0.0 <= prediction.not_digit <= 1.0
    assert prediction.number is not None and prediction.number.text == str(prediction.digit)


def unreachable_url() -> str:
    """A WebSocket URL on a port where nothing listens."""
    return f"ws://127.0.0.1:{free_port()}/ws"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def test_connect_reads_hello(server: RunningServer) -> None:
    """Connecting reads the hello: the model and the server's limits."""
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        hello = client.hello
    assert hello.model.classes == tuple(range(10))
    assert hello.model.input == (28, 28, 1)
    # The figure metrics.json states, not merely a fraction: a server that cannot read the
    # file says 0.0.
    assert hello.model.test_accuracy == json.loads(METRICS_PATH.read_text())["test_accuracy"]
    assert min(hello.max_bytes, hello.max_pixels, hello.max_messages_per_s) > 0


async def test_predict_file_over_websocket(server: RunningServer, seven_png: Path) -> None:
    """A PNG file sent over the socket is answered with its digit, under the seq used."""
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        prediction = await client.predict(seven_png)
    assert_valid(prediction)
    assert prediction.digit == 7
    assert prediction.seq == 0
    assert prediction.latency_ms is not None and prediction.latency_ms >= 0


async def test_http_matches_websocket(server: RunningServer, seven_png: Path) -> None:
    """`predict_http` gives the socket's probabilities for the same file, and the model input."""
    over_http = predict_http(server.http_url, seven_png, TIMEOUT_S, include_input=True)
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        over_socket = await client.predict(seven_png.read_bytes())
    assert_valid(over_http)
    assert over_http.digit == over_socket.digit == 7
    assert over_http.probabilities == pytest.approx(over_socket.probabilities, abs=1e-4)
    assert over_http.input_png is not None
    with Image.open(io.BytesIO(over_http.input_png)) as model_input:
        assert model_input.size == (28, 28)


async def test_predict_pillow_image(server: RunningServer) -> None:
    """A Pillow image (a transparent canvas, as `toDataURL` gives) is recognised."""
    canvas = draw_recording(SEVEN, background=(0, 0, 0, 0))
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        seq = await client.send_image(canvas, binary=False)
        prediction = await client.wait_for(seq)
    assert_valid(prediction)
    assert prediction.digit == 7


async def test_predict_strokes(server: RunningServer) -> None:
    """Strokes are drawn by the server and recognised; no strokes is an empty canvas."""
    recording = load_recording(SEVEN)
    size = (recording.width, recording.height, recording.line_width)
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        drawn = await client.predict_strokes(
            [[(point.x, point.y) for point in stroke] for stroke in recording.strokes], *size
        )
        blank = await client.predict_strokes([], *size)
    assert_valid(drawn)
    assert drawn.digit == 7
    assert blank.empty and blank.digit is None and blank.probabilities is None
    assert blank.seq == 1


async def test_predictions_stream_in_order(server: RunningServer, seven_png: Path) -> None:
    """Iterating over predictions gives increasing seqs and always answers the last one."""
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        for _ in range(5):
            last = await client.send_file(seven_png)
        seqs: list[int] = []
        async for prediction in client.predictions(idle_timeout=TIMEOUT_S):
            assert prediction.seq is not None
            seqs.append(prediction.seq)
            if prediction.seq == last:
                break
    assert seqs == sorted(set(seqs))
    assert seqs[-1] == last == 4


async def test_error_answer_raises_and_connection_survives(
    server: RunningServer, not_an_image: Path, seven_png: Path
) -> None:
    """Bytes that are not a picture raise `ServerError(bad_image)`; the socket keeps working."""
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        with pytest.raises(ServerError) as raised:
            await client.predict(not_an_image)
        prediction = await client.predict(seven_png)
    assert raised.value.code == "bad_image"
    assert raised.value.seq == 0
    assert prediction.seq == 1 and prediction.digit == 7


async def test_oversized_text_snapshot_keeps_sequence_in_step(
    server: RunningServer, seven_png: Path
) -> None:
    """A text snapshot over `max_bytes` is refused (`too_large`, no seq); the next one works."""
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        oversized = bytes(client.hello.max_bytes)
        with pytest.raises(ServerError) as raised:
            await client.wait_for(await client.send_bytes(oversized, binary=False))
        prediction = await client.predict(seven_png)
    assert (raised.value.code, raised.value.seq) == ("too_large", None)
    assert prediction.seq == 0 and prediction.digit == 7


# What the stand-in server below says first: a hello as protocol v1 has it.
STAND_IN_HELLO = {
    "type": "hello",
    "model": {
        "name": "stand-in", "version": "0", "input": [28, 28, 1],
        "classes": list(range(10)), "test_accuracy": 0.99,
    },
    "debounce_ms": 15, "max_wait_ms": 100, "max_bytes": 1024,
    "max_pixels": 4096, "max_messages_per_s": 200,
}


@asynccontextmanager
async def error_first_server() -> AsyncIterator[str]:
    """A local WebSocket server that answers two messages, the second's error first.

    It reads seqs 0 and 1, then sends the error about 1 before the prediction for 0, as a v1
    server could when it refused the second message at once while the first still waited
    for the model. Yields its URL.
    """

    async def answer_backwards(connection: ServerConnection) -> None:
        await connection.send(json.dumps(STAND_IN_HELLO))
        for _ in range(2):
            await connection.recv()
        await connection.send(json.dumps(
            {"type": "error", "seq": 1, "code": "bad_image", "message": "not a decodable image"}
        ))
        probabilities = [0.01] * 10
        probabilities[7] = 0.91
        await connection.send(json.dumps({
            "type": "prediction", "seq": 0, "digit": 7, "confidence": 0.91,
            "probabilities": probabilities, "empty": False, "latency_ms": 3.0,
        }))
        await connection.wait_closed()

    async with serve(answer_backwards, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


@pytest.mark.parametrize("read_second", ["wait_for", "receive"])
async def test_answers_are_matched_by_seq_whatever_the_order(read_second: str) -> None:
    """An error about seq 1 that overtakes seq 0's prediction is kept for whoever reads it next.

    `wait_for(0)` returns the prediction for 0 rather than raising the error about 1, which
    `wait_for(1)` (or the next `receive()`) then raises.
    """
    async with error_first_server() as url, DigitsClient.connect(url, timeout=TIMEOUT_S) as client:
        first = await client.send_bytes(b"a picture")
        second = await client.send_bytes(b"not a picture")
        prediction = await client.wait_for(first)
        with pytest.raises(ServerError) as raised:
            if read_second == "wait_for":
                await client.wait_for(second)
            else:
                await client.receive()
    assert (prediction.seq, prediction.digit) == (0, 7)
    assert (raised.value.seq, raised.value.code) == (1, "bad_image")


def test_http_error_answer(server: RunningServer, not_an_image: Path) -> None:
    """`predict_http` raises `ServerError` with the code and status of the JSON error."""
    with pytest.raises(ServerError) as raised:
        predict_http(server.ws_url, not_an_image, TIMEOUT_S)
    assert raised.value.code == "bad_image"
    assert raised.value.status == 400


async def test_unreachable_server_raises_connection_failed() -> None:
    """Connecting where nothing listens raises `ConnectionFailed`, as does the HTTP helper."""
    url = unreachable_url()
    with pytest.raises(ConnectionFailed):
        await DigitsClient.open(url, timeout=TIMEOUT_S)
    with pytest.raises(ConnectionFailed):
        predict_http(url, b"\x89PNG\r\n\x1a\n", TIMEOUT_S)


@pytest.mark.parametrize("address", ["websocket", "server"])
@pytest.mark.parametrize("transport", [[], ["--http"]], ids=["websocket", "http"])
def test_cli_predict_prints_one_line_per_file(
    server: RunningServer, seven_png: Path, transport: list[str], address: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`predict FILE...` prints one JSON line per file, given either of the server's URLs."""
    other = seven_png.with_name("again.png")
    other.write_bytes(seven_png.read_bytes())
    files = [str(seven_png), str(other)]
    url = server.ws_url if address == "websocket" else server.http_url
    status = main(["predict", *transport, "--url", url, "--timeout", str(TIMEOUT_S), *files])
    output = capsys.readouterr()
    assert status == 0, output.err
    lines = json_lines(output.out)
    assert [line["path"] for line in lines] == files
    for line in lines:
        assert line["digit"] == 7
        assert line["confidence"] == pytest.approx(max(line["probabilities"]))
        assert len(line["probabilities"]) == 10
    assert output.err == ""


@pytest.mark.parametrize("name", sorted(EXAMPLE_DIGITS))
def test_cli_stream_replays_example(
    server: RunningServer, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stream` replays an example drawing: live updates, then the final answer, its digit."""
    path = EXAMPLES / f"{name}.json"
    status = main(["stream", "--url", server.ws_url, "--timeout", str(TIMEOUT_S), str(path)])
    output = capsys.readouterr()
    assert status == 0, output.err
    lines = json_lines(output.out)
    assert [line["type"] for line in lines[:-1]] == ["update"] * (len(lines) - 1)
    assert len(lines) >= 2, "no live update before the final answer"
    final = lines[-1]
    assert final["type"] == "final"
    assert final["digit"] == EXAMPLE_DIGITS[name], final
    assert final["seq"] == len(replay_schedule(load_recording(path))) - 1
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(set(seqs))


@pytest.mark.parametrize(
    "command",
    [["predict"], ["predict", "--http"], ["stream", str(SEVEN)]],
    ids=["predict", "predict-http", "stream"],
)
def test_cli_stopped_server_exits_with_one_line(
    seven_png: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With no server listening, the CLI exits non-zero with one line on stderr."""
    files = [str(seven_png)] if command[0] == "predict" else []
    status = main([*command, "--url", unreachable_url(), "--timeout", str(TIMEOUT_S), *files])
    output = capsys.readouterr()
    assert status == 3
    assert output.out == ""
    assert len(output.err.splitlines()) == 1
    assert "connection refused" in output.err


@pytest.mark.parametrize("transport", [[], ["--http"]], ids=["websocket", "http"])
def test_cli_error_answer_exits_with_one_line(
    server: RunningServer, not_an_image: Path, transport: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file the server rejects gives one line naming it and the error code, and status 1."""
    status = main(["predict", *transport, "--url", server.ws_url, str(not_an_image)])
    output = capsys.readouterr()
    assert status == 1
    assert output.out == ""
    [line] = output.err.splitlines()
    assert line.startswith(f"error: {not_an_image}: the server answered bad_image: ")


def test_cli_bad_recording_exits_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recording that is not valid stops `stream` before connecting, with one line."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"width": 280, "height": 280, "line_width": 20, "strokes": [[[1, 2]]]}')
    status = main(["stream", "--url", unreachable_url(), str(broken)])
    output = capsys.readouterr()
    assert status == 1
    assert len(output.err.splitlines()) == 1
    assert "[x, y, t_ms]" in output.err


def test_replay_schedule_throttles_like_the_page() -> None:
    """Sends are 50 ms apart while the pen moves, plus one at each pen-up with the whole stroke."""
    recording = load_recording(EXAMPLES / "four.json")
    schedule = replay_schedule(recording)
    for earlier, later in itertools.pairwise(schedule):
        assert later.at_ms >= earlier.at_ms
        if not later.pen_up:
            assert later.at_ms - earlier.at_ms >= SEND_INTERVAL_MS
    pen_ups = [send for send in schedule if send.pen_up]
    assert len(pen_ups) == len(recording.strokes)
    for count, send in enumerate(pen_ups, start=1):
        assert len(send.strokes) == count
        assert len(send.strokes[-1]) == len(recording.strokes[count - 1])


def test_replay_of_empty_recording_sends_a_blank_canvas() -> None:
    """An empty recording still sends one blank drawing, so there is an answer to wait for."""
    recording = parse_recording({"width": 10, "height": 10, "line_width": 2, "strokes": []})
    assert [(send.at_ms, send.strokes) for send in replay_schedule(recording)] == [(0.0, ())]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"width": 0, "height": 280, "line_width": 20, "strokes": []},
        {"width": 280, "height": 280, "line_width": True, "strokes": []},
        {"width": 280, "height": 280, "line_width": 20, "strokes": [[]]},
        {"width": 280, "height": 280, "line_width": 20, "strokes": [[[1, 2, 30], [3, 4, 10]]]},
    ],
    ids=["not-object", "zero-width", "bool-line-width", "empty-stroke", "time-backwards"],
)
def test_bad_recordings_are_refused(body: object) -> None:
    """Malformed recordings raise `RecordingError`."""
    with pytest.raises(RecordingError):
        parse_recording(body)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:8000/ws", "http://127.0.0.1:8000"),
        ("wss://digits.example/app/ws/", "https://digits.example/app"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/api/predict", "http://127.0.0.1:8000"),
    ],
)
def test_http_url_for(url: str, expected: str) -> None:
    """The HTTP base is derived from the WebSocket URL (or kept)."""
    assert http_url_for(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws"),
        ("https://digits.example/app/", "wss://digits.example/app/ws"),
        ("http://127.0.0.1:8000/api/predict", "ws://127.0.0.1:8000/ws"),
        ("http://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws"),
        ("ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws"),
    ],
)
def test_websocket_url_for(url: str, expected: str) -> None:
    """The server's own address leads to its /ws; a WebSocket URL is kept."""
    assert websocket_url_for(url) == expected


# ---- protocol v2: numbers and "not a digit" ---------------------------------------------------


def v2_body(**changes: Any) -> dict[str, Any]:
    """A v2 prediction object for the number 47, rejected as one digit."""
    probabilities = [0.02] * 10
    probabilities[4] = 0.82
    body: dict[str, Any] = {
        "digit": None, "confidence": None, "probabilities": probabilities, "empty": False,
        "not_digit": 0.97,
        "number": {
            "text": "47", "confidence": 0.9,
            "digits": [
                {"digit": 4, "confidence": 0.95, "probabilities": probabilities,
                 "box": [10, 12, 120, 250]},
                {"digit": 7, "confidence": 0.95, "probabilities": probabilities,
                 "box": [130, 10.5, 260, 251]},
            ],
        },
    }
    body.update(changes)
    return body


def test_a_v2_answer_parses_with_its_number() -> None:
    """`not_digit` and `number` are parsed; a rejected picture has no digit, only a number."""
    prediction = parse_prediction(v2_body())
    assert prediction.rejected and prediction.digit is None and prediction.confidence is None
    assert prediction.not_digit == pytest.approx(0.97)
    assert prediction.number is not None
    assert prediction.number.text == "47"
    assert [digit.digit for digit in prediction.number.digits] == [4, 7]
    assert prediction.number.digits[1].box == (130.0, 10.5, 260.0, 251.0)
    assert prediction.as_json()["number"]["text"] == "47"


def test_a_v1_answer_has_no_number() -> None:
    """A v1 server's answer (no `not_digit`, no `number`) parses with both None."""
    body = v2_body(digit=4, confidence=0.82)
    del body["not_digit"], body["number"]
    prediction = parse_prediction(body)
    assert (prediction.digit, prediction.not_digit, prediction.number) == (4, None, None)
    assert not prediction.rejected


@pytest.mark.parametrize(
    "changes",
    [
        {"not_digit": 1.5},
        {"number": {"text": "41", "confidence": 0.9, "digits": v2_body()["number"]["digits"]}},
        {"number": {"text": "4", "confidence": 0.9, "digits": [{"digit": 4}]}},
        {"number": "47"},
        {"digit": 12, "confidence": 0.5},
    ],
    ids=["not-digit-over-1", "text-not-its-digits", "digit-without-box", "not-object",
         "digit-12"],
)
def test_malformed_v2_answers_are_refused(changes: dict[str, Any]) -> None:
    """A v2 answer that breaks PROTOCOL.md raises `ProtocolError`."""
    with pytest.raises(ProtocolError):
        parse_prediction(v2_body(**changes))


async def test_hello_states_the_rejection_threshold(server: RunningServer) -> None:
    """A v2 server's hello carries `not_digit_threshold`, metrics.json's."""
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        threshold = client.hello.not_digit_threshold
    assert threshold == pytest.approx(json.loads(METRICS_PATH.read_text())["not_digit_threshold"])


@pytest.mark.parametrize("transport", ["websocket", "http"])
async def test_a_number_is_read_and_rejected_as_one_digit(
    server: RunningServer, forty_seven_png: Path, transport: str
) -> None:
    """A picture of 4 and 7 side by side is no one digit (digit null, `rejected`) and reads
    as the number 47, with a box for each digit, over the socket and over HTTP."""
    if transport == "http":
        prediction = predict_http(server.http_url, forty_seven_png, TIMEOUT_S)
    else:
        async with DigitsClient.connect(server.http_url, timeout=TIMEOUT_S) as client:
            prediction = await client.predict(forty_seven_png)
    assert prediction.rejected and prediction.digit is None
    assert prediction.not_digit is not None and prediction.not_digit > 0.5
    assert prediction.number is not None and prediction.number.text == "47"
    four, seven = prediction.number.digits
    assert four.box[2] <= seven.box[0] + 20
    assert 0.0 < prediction.number.confidence <= 1.0


async def test_ink_is_streamed_stroke_by_stroke(server: RunningServer) -> None:
    """`send_ink` appends points to strokes (v2 ink): the four and the seven streamed a few
    points at a time, side by side, read as 47; `send_undo` takes the 7's stroke back and
    `send_clear` leaves nothing."""
    four, seven = load_recording(EXAMPLES / "four.json"), load_recording(SEVEN)
    strokes = [[(point.x, point.y) for point in stroke] for stroke in four.strokes]
    strokes += [[(point.x + four.width, point.y) for point in stroke] for stroke in seven.strokes]
    size = (four.width + seven.width, four.height, four.line_width)
    async with DigitsClient.connect(server.ws_url, timeout=TIMEOUT_S) as client:
        for index, stroke in enumerate(strokes):
            for start in range(0, len(stroke), 5):
                last = await client.send_ink(index, stroke[start : start + 5], *size)
        number = await client.wait_for(last)
        undone = await client.wait_for(await client.send_undo())
        cleared = await client.wait_for(await client.send_clear())
    assert number.number is not None and number.number.text == "47", number.as_json()
    assert undone.number is not None and undone.number.text == "4"
    assert cleared.empty and cleared.number is None and cleared.not_digit is None


@pytest.mark.parametrize("address", ["websocket", "server"])
@pytest.mark.parametrize("transport", [[], ["--http"]], ids=["websocket", "http"])
def test_cli_predict_prints_the_number_and_says_not_a_digit(
    server: RunningServer, seven_png: Path, forty_seven_png: Path, transport: list[str],
    address: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """`predict` prints each file's number (text and confidence); a picture that is no one
    digit says "not a digit" with a null digit, given either of the server's URLs."""
    url = server.ws_url if address == "websocket" else server.http_url
    files = [str(seven_png), str(forty_seven_png)]
    status = main(["predict", *transport, "--url", url, "--timeout", str(TIMEOUT_S), *files])
    output = capsys.readouterr()
    assert status == 0, output.err
    seven, forty_seven = json_lines(output.out)
    assert (seven["reading"], seven["digit"], seven["number"]["text"]) == ("7", 7, "7")
    assert 0.0 < seven["number"]["confidence"] <= 1.0
    assert seven["not_digit"] < 0.5
    assert (forty_seven["reading"], forty_seven["digit"]) == ("not a digit", None)
    assert forty_seven["confidence"] is None and forty_seven["not_digit"] > 0.5
    assert forty_seven["number"]["text"] == "47"
    assert set(forty_seven["number"]) == {"text", "confidence"}
