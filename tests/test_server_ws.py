"""The WebSocket side of `python -m server`: protocol v1 against a real server process."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import socket as stdlib_socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.config import MIB
from tests.conftest import TIMEOUT_S, RunningServer, start_server
from tests.pictures import (
    blank_png,
    bomb_png,
    data_url,
    digit_png,
    strokes_message,
)
from tests.predictions import assert_prediction_object

SEVEN = digit_png(7)
ONE = digit_png(1)


@asynccontextmanager
async def connected(
    server: RunningServer, query: str = "", **options: Any
) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    """A WebSocket connection to the server and the hello it opened with."""
    async with connect(server.ws_url + query, open_timeout=TIMEOUT_S, **options) as socket:
        hello = await receive(socket)
        assert hello["type"] == "hello"
        yield socket, hello


async def receive(socket: ClientConnection) -> dict[str, Any]:
    """The next message, parsed."""
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
    return message


async def until_seq(socket: ClientConnection, seq: int) -> list[dict[str, Any]]:
    """Every message up to and including the first one about `seq`."""
    messages = []
    while True:
        message = await receive(socket)
        messages.append(message)
        if message.get("seq") == seq:
            return messages


async def answer_to(socket: ClientConnection, seq: int) -> dict[str, Any]:
    """The prediction or error about `seq`, skipping messages about older ones."""
    return (await until_seq(socket, seq))[-1]


def snapshot(seq: int, picture: bytes = SEVEN) -> str:
    """A text snapshot message carrying a picture as a data URL."""
    return json.dumps({"type": "snapshot", "seq": seq, "image": data_url(picture)})


def assert_prediction(message: dict[str, Any], seq: int) -> None:
    """A prediction for `seq` with ink (the v2 object) and its latency."""
    assert message["type"] == "prediction", message
    assert message["seq"] == seq
    assert_prediction_object(message)
    assert message["latency_ms"] >= 0


async def assert_recovers(socket: ClientConnection, server: RunningServer, seq: int) -> None:
    """The connection still answers a text and a binary snapshot, and `/healthz` is ok."""
    await socket.send(snapshot(seq))
    assert_prediction(await answer_to(socket, seq), seq)
    await socket.send(ONE)
    assert_prediction(await answer_to(socket, seq + 1), seq + 1)
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        health = await http.get(f"{server.http_url}/healthz")
    assert health.json() == {"status": "ok"}


async def metric(server: RunningServer, pattern: str) -> float:
    """The value of the first metric line matching a regular expression (0 if none)."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        text = (await http.get(f"{server.http_url}/metrics")).text
    found = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def until_metric(server: RunningServer, pattern: str, check: Callable[[float], bool]) -> None:
    """Poll `/metrics` until a metric passes a check (or fail after TIMEOUT_S)."""
    async with asyncio.timeout(TIMEOUT_S):
        while not check(await metric(server, pattern)):
            await asyncio.sleep(0.05)


async def http_prediction(server: RunningServer, picture: bytes) -> dict[str, Any]:
    """What `POST /api/predict` answers for a picture."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        response = await http.post(
            f"{server.http_url}/api/predict",
            content=picture,
            headers={"Content-Type": "image/png"},
        )
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture(scope="module")
def patient_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose debounce (5 s) is far longer than its maximum wait (100 ms)."""
    running = start_server(
        tmp_path_factory.mktemp("patient"), "--debounce-ms", "5000", "--max-wait-ms", "100"
    )
    yield running
    running.stop(TIMEOUT_S)


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server allowing 5 messages a second and 2 connections, pinging twice a second.

    Its limits are set by variables, its pings by flags: a client silent for 1 s is gone.
    """
    running = start_server(
        tmp_path_factory.mktemp("limited"),
        "--ping-interval-s", "0.5", "--ping-timeout-s", "0.5",
        env={"DIGITS_MAX_MESSAGES_PER_S": "5", "DIGITS_MAX_CONNECTIONS": "2"},
    )
    yield running
    running.stop(TIMEOUT_S)


# --- the conversation ------------------------------------------------------------------


async def test_hello_names_the_model_and_limits(server: RunningServer) -> None:
    """The first message is hello: the model as `/api/model`, timings and limits."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        model = (await http.get(f"{server.http_url}/api/model")).json()
    async with connected(server) as (_, hello):
        assert hello["model"] == model
        assert (hello["debounce_ms"], hello["max_wait_ms"]) == (15, 100)
        assert hello["max_bytes"] == MIB
        assert hello["max_pixels"] == 4096 * 4096
        assert hello["max_messages_per_s"] > 0


async def test_text_snapshots_are_answered(server: RunningServer) -> None:
    """Snapshots as a data URL or bare base64 get a prediction with their seq."""
    async with connected(server) as (socket, _):
        await socket.send(snapshot(0))
        answer = await receive(socket)
        assert_prediction(answer, 0)
        assert answer["digit"] == 7
        assert "input_png" not in answer
        bare = base64.b64encode(ONE).decode()
        await socket.send(json.dumps({"type": "snapshot", "seq": 5, "image": bare}))
        answer = await receive(socket)
        assert_prediction(answer, 5)
        assert answer["digit"] == 1


async def test_binary_frames_take_the_next_seq(server: RunningServer) -> None:
    """A first binary frame is seq 0; after a text seq n, a binary frame is n + 1."""
    async with connected(server) as (socket, _):
        await socket.send(SEVEN)
        assert_prediction(await receive(socket), 0)
        await socket.send(snapshot(10))
        assert_prediction(await receive(socket), 10)
        await socket.send(ONE)
        assert_prediction(await receive(socket), 11)


async def test_strokes_are_drawn_and_read(server: RunningServer) -> None:
    """A strokes message is drawn and answered like a snapshot; no strokes is empty."""
    async with connected(server) as (socket, _):
        await socket.send(json.dumps(strokes_message(7, 0)))
        answer = await receive(socket)
        assert_prediction(answer, 0)
        assert answer["digit"] == 7
        await socket.send(json.dumps(strokes_message(None, 1)))
        blank = await receive(socket)
        assert (blank["seq"], blank["empty"], blank["digit"]) == (1, True, None)
        assert blank["probabilities"] is None and blank["confidence"] is None


@pytest.mark.parametrize("transparent", [False, True], ids=["white", "transparent"])
async def test_empty_canvas_is_empty(server: RunningServer, transparent: bool) -> None:
    """A blank canvas is answered `empty` with nulls; the connection then reads digits."""
    async with connected(server) as (socket, _):
        await socket.send(blank_png(transparent))
        answer = await receive(socket)
        assert answer["type"] == "prediction" and answer["seq"] == 0
        assert answer["empty"] is True
        assert answer["digit"] is None and answer["probabilities"] is None
        await assert_recovers(socket, server, 1)


async def test_include_input_holds_for_the_whole_connection(server: RunningServer) -> None:
    """`/ws?include_input=1` adds the 28x28 model input to every prediction."""
    async with connected(server, "?include_input=1") as (socket, _):
        for seq in range(2):
            await socket.send(SEVEN)
            answer = await receive(socket)
            assert answer["seq"] == seq
            assert answer["input_png"].startswith("data:image/png;base64,")


# --- the numbered semantics --------------------------------------------------------------


async def test_burst_is_coalesced_latest_wins(server: RunningServer) -> None:
    """Semantics 1 and 2: a burst gets fewer answers, seqs rising, the last one answered."""
    decoded, dropped = "digits_decode_seconds_count", "digits_predictions_dropped_total"
    decoded_before, dropped_before = await metric(server, decoded), await metric(server, dropped)
    async with connected(server) as (socket, _):
        for seq in range(50):
            await socket.send(snapshot(seq, SEVEN if seq % 2 else ONE))
        messages = await until_seq(socket, 49)
        assert all(message["type"] == "prediction" for message in messages)
        seqs = [message["seq"] for message in messages]
        assert seqs == sorted(set(seqs))
        assert len(seqs) < 50
        assert messages[-1]["digit"] == 7  # the answer is about the newest picture
        # Nothing older arrives afterwards: the next message answers the next snapshot.
        await socket.send(snapshot(50))
        assert (await receive(socket))["seq"] == 50
    assert await metric(server, "digits_snapshots_coalesced_total") > 0
    # Skipped snapshots were never decoded: one decode per answer, not one per snapshot.
    answers = len(seqs) + 1 + await metric(server, dropped) - dropped_before
    assert await metric(server, decoded) - decoded_before == answers


async def test_updates_keep_coming_while_drawing(patient_server: RunningServer) -> None:
    """Semantic 3: snapshots closer than the debounce still get answers every max wait."""
    async with connected(patient_server) as (socket, hello):
        assert (hello["debounce_ms"], hello["max_wait_ms"]) == (5000, 100)
        sent = 0
        update = None
        async with asyncio.timeout(TIMEOUT_S):
            # Keep drawing, a snapshot every 20 ms, until an answer comes back: with only
            # the debounce, none would before the drawing paused for 5 s.
            while update is None:
                await socket.send(SEVEN)
                sent += 1
                try:
                    update = json.loads(await asyncio.wait_for(socket.recv(), 0.02))
                except TimeoutError:
                    continue
        assert_prediction(update, update["seq"])
        assert update["seq"] < sent
        await socket.send(ONE)
        assert_prediction(await answer_to(socket, sent), sent)


async def test_probabilities_equal_http(server: RunningServer) -> None:
    """Semantic 4: binary and text snapshots give POST /api/predict's answer; the strokes of
    the same drawing give its digit and nearly its probabilities."""
    expected = (await http_prediction(server, SEVEN))["probabilities"]
    async with connected(server) as (socket, _):
        await socket.send(SEVEN)
        over_binary = await receive(socket)
        await socket.send(snapshot(1))
        over_text = await receive(socket)
        await socket.send(json.dumps(strokes_message(7, 2)))
        over_strokes = await receive(socket)
    for answer in (over_binary, over_text, over_strokes):
        assert answer["type"] == "prediction"
    for answer in (over_binary, over_text):
        assert answer["probabilities"] == pytest.approx(expected, abs=1e-4)
    # Strokes are drawn straight into the model input, the picture on a full canvas: two
    # renderings of one drawing, which agree on the digit and closely on the rest.
    probabilities = over_strokes["probabilities"]
    assert probabilities.index(max(probabilities)) == expected.index(max(expected)) == 7
    assert probabilities == pytest.approx(expected, abs=0.05)


async def test_bad_input_does_not_touch_other_connections(server: RunningServer) -> None:
    """Semantic 5: while one client sends garbage, another is answered as usual."""
    garbage: list[str | bytes] = [b"\x00" * 100, "{", bomb_png(), snapshot(-1), digit_png(1)[:99]]
    async with connected(server) as (bad, _), connected(server) as (good, _):
        for round_number in range(4):
            for frame in garbage:
                await bad.send(frame)
            await good.send(snapshot(round_number))
            assert_prediction(await answer_to(good, round_number), round_number)
        await assert_recovers(bad, server, 1000)


# A client that does not read, flooded until answers are dropped: at most this many
# snapshots, stopping once this many answers were dropped. Its socket is made small so that
# the kernel holds a few hundred answers (about 0.8 kB each with the model input, sent
# uncompressed) rather than megabytes: a 4 kB receive buffer, and 536-byte segments, which
# keep Linux from growing the server's send buffer to the 4 MB it allows on loopback.
SLOW_RECEIVE_BUFFER_BYTES = 4096
SLOW_SEGMENT_BYTES = 536
FLOOD_SNAPSHOTS = 2000
FLOOD_DROPS = 50
# 50 snapshots a second: under the rate limit, and far enough apart to be answered one by one.
FLOOD_INTERVAL_S = 0.02
# Semantic 2: the other client's answers come "well within a second at light load".
PROMPT_S = TIMEOUT_S / 10


def wobbly_strokes(seq: int) -> str:
    """A strokes message for `seq`: 0, 1, 4 or 7, each point moved at random by up to 8 px.

    Every one is a different drawing with a different model input; moving the whole digit
    would not do, as preprocessing centres it again.
    """
    message = strokes_message((0, 1, 4, 7)[seq % 4], seq)
    wobble = random.Random(seq)
    strokes = message["strokes"]
    assert isinstance(strokes, list)
    message["strokes"] = [
        [[x + wobble.uniform(-8, 8), y + wobble.uniform(-8, 8)] for x, y in stroke]
        for stroke in strokes
    ]
    return json.dumps(message)


@asynccontextmanager
async def not_reading(server: RunningServer, query: str = "") -> AsyncIterator[ClientConnection]:
    """A connection with small buffers that reads its hello, then nothing until `recv()`.

    `max_queue=1` makes the client library stop reading the socket once one message waits;
    it sends no pings, as they would need the server's pongs read, and asks for no
    compression, which would shrink similar answers to a few bytes each.
    """
    raw = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER_BYTES)
    raw.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_MAXSEG, SLOW_SEGMENT_BYTES)
    raw.connect(("127.0.0.1", server.port))
    async with connect(
        server.ws_url + query, sock=raw, open_timeout=TIMEOUT_S,
        max_queue=1, ping_interval=None, compression=None,
    ) as socket:
        assert (await receive(socket))["type"] == "hello"
        yield socket


async def draw_and_time(socket: ClientConnection, stop: asyncio.Event) -> list[float]:
    """Draw a snapshot every 50 ms until `stop`; returns how long each answer took."""
    waits = []
    seq = 0
    while not stop.is_set():
        started = time.monotonic()
        await socket.send(snapshot(seq, SEVEN if seq % 2 else ONE))
        assert_prediction(await answer_to(socket, seq), seq)
        waits.append(time.monotonic() - started)
        seq += 1
        await asyncio.sleep(0.05)
    return waits


async def test_client_that_stops_reading_delays_nobody(server: RunningServer) -> None:
    """Semantic 6: a client that stops reading is kept to its newest answer, delaying nobody.

    It asks for the model input with every answer and sends distinct drawings until its
    buffers are full and answers are dropped, while another client keeps drawing. Then every
    prediction made meanwhile was sent, dropped, or is one of at most two held for the slow
    client: the one its blocked send holds and the newest, queued.
    """
    names = (
        "digits_decode_seconds_count",
        'digits_predictions_sent_total{transport="ws"}',
        "digits_predictions_dropped_total",
    )
    before = [await metric(server, name) for name in names]

    async def made_sent_dropped() -> list[float]:
        return [await metric(server, name) - then for name, then in zip(names, before, strict=True)]

    async with not_reading(server, "?include_input=1") as slow, connected(server) as (fast, _):
        stop = asyncio.Event()
        drawing = asyncio.create_task(draw_and_time(fast, stop))
        try:
            for last in range(FLOOD_SNAPSHOTS):
                await slow.send(wobbly_strokes(last))
                await asyncio.sleep(FLOOD_INTERVAL_S)
                if last % 20 == 19 and (await made_sent_dropped())[2] >= FLOOD_DROPS:
                    break
        finally:
            stop.set()
            waits = await drawing
        assert waits and max(waits) < PROMPT_S, f"the drawing client waited {max(waits):.3f} s"
        # The snapshot pending when the flood stopped is answered within moments.
        made, sent, dropped = await made_sent_dropped()
        deadline = time.monotonic() + TIMEOUT_S / 5
        while made - sent - dropped > 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            made, sent, dropped = await made_sent_dropped()
        assert made - sent - dropped <= 2, (
            f"after {last + 1} snapshots, {made:g} predictions made, {sent:g} sent and"
            f" {dropped:g} dropped: {made - sent - dropped:g} held for a client that does not read"
        )
        assert dropped >= FLOOD_DROPS, f"the flood filled no buffer ({dropped:g} dropped)"
        # When the slow client reads at last, its answers are in order, ending with its last.
        messages = await until_seq(slow, last)
        seqs = [message["seq"] for message in messages]
        assert seqs == sorted(set(seqs))
        assert_prediction(messages[-1], last)


# --- errors -------------------------------------------------------------------------------

STROKES_CASES: dict[str, dict[str, Any]] = {
    "strokes-bare-points": {"strokes": [[140, 140]]},
    "strokes-zero-width": {"width": 0},
    "strokes-zero-pen": {"line_width": 0},
    "strokes-string-coordinate": {"strokes": [[["1", 2]]]},
}

# (frame, expected error code, expected error seq) for each bad message.
BAD_FRAMES: dict[str, tuple[str | bytes, str, int | None]] = {
    "malformed-json": ('{"type": "snapshot", "seq": 3', "bad_message", None),
    "not-an-object": ("[1, 2, 3]", "bad_message", None),
    "empty-text": ("", "bad_message", None),
    "nan": ('{"type": "snapshot", "seq": NaN, "image": ""}', "bad_message", None),
    "unknown-type": (json.dumps({"type": "draw", "seq": 3}), "bad_message", 3),
    "missing-seq": (json.dumps({"type": "snapshot", "image": ""}), "bad_message", None),
    "float-seq": (json.dumps({"type": "snapshot", "seq": 1.5, "image": ""}), "bad_message", None),
    "string-seq": (json.dumps({"type": "snapshot", "seq": "2", "image": ""}), "bad_message", None),
    "bool-seq": (json.dumps({"type": "snapshot", "seq": True, "image": ""}), "bad_message", None),
    "negative-seq": (json.dumps({"type": "snapshot", "seq": -4, "image": ""}), "bad_message", None),
    "missing-image": (json.dumps({"type": "snapshot", "seq": 3}), "bad_message", 3),
    "invalid-base64": (
        json.dumps({"type": "snapshot", "seq": 3, "image": "data:image/png;base64,**"}),
        "bad_image",
        3,
    ),
    "text-not-an-image": (snapshot(3, b"hello, world"), "bad_image", 3),
    "binary-not-an-image": (b"hello, world", "bad_image", 0),
    "garbage-binary": (bytes(range(256)) * 8, "bad_image", 0),
    "empty-binary": (b"", "bad_image", 0),
    "truncated-png": (SEVEN[:150], "bad_image", 0),
    "bomb-binary": (bomb_png(), "too_large", 0),
    "bomb-text": (snapshot(3, bomb_png()), "too_large", 3),
    "over-pixel-limit": (bomb_png(5_000, 5_000), "too_large", 0),
    "oversized-binary": (b"\x89PNG" + bytes(MIB), "too_large", 0),
    "oversized-text": (snapshot(3, bytes(MIB)), "too_large", None),
    "too-many-stroke-points": (
        json.dumps({**strokes_message(1, 3), "strokes": [[[140, 140]] * 20_001]}),
        "too_large",
        3,
    ),
    **{
        name: (json.dumps({**strokes_message(1, 3), **change}), "bad_message", 3)
        for name, change in STROKES_CASES.items()
    },
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
async def test_bad_frame_gets_an_error_and_the_connection_works_on(
    server: RunningServer, case: str
) -> None:
    """Each bad frame gets its error code and seq; the same connection then works."""
    frame, code, seq = BAD_FRAMES[case]
    async with connected(server) as (socket, _):
        await socket.send(frame)
        error = await receive(socket)
        assert error["type"] == "error"
        assert (error["code"], error["seq"]) == (code, seq)
        assert isinstance(error["message"], str) and error["message"]
        await assert_recovers(socket, server, 100)
    pattern = rf'digits_errors_total\{{code="{code}",transport="ws"\}}'
    assert await metric(server, pattern) >= 1


async def test_seq_must_increase(server: RunningServer) -> None:
    """A repeated or smaller seq is `bad_message` with seq null; a larger one works again."""
    async with connected(server) as (socket, _):
        await socket.send(snapshot(5))
        assert_prediction(await receive(socket), 5)
        for stale in (5, 3):
            await socket.send(snapshot(stale))
            error = await receive(socket)
            assert (error["type"], error["code"], error["seq"]) == ("error", "bad_message", None)
        await socket.send(snapshot(6))
        assert_prediction(await receive(socket), 6)


async def test_rejected_message_still_moves_the_binary_seq(server: RunningServer) -> None:
    """A binary frame follows the seq of the previous message even when it was refused."""
    async with connected(server) as (socket, _):
        await socket.send(json.dumps({"type": "draw", "seq": 7}))
        assert (await receive(socket))["seq"] == 7
        await socket.send(SEVEN)
        assert_prediction(await receive(socket), 8)


async def test_frame_far_over_the_limit_closes_the_connection(server: RunningServer) -> None:
    """A frame over four times the limit is not buffered: the connection closes with 1009."""
    async with connected(server) as (socket, _):
        await socket.send(bytes(4 * MIB + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with connected(server) as (socket, _):
        await assert_recovers(socket, server, 0)


async def test_too_fast_a_client_is_rate_limited(limited_server: RunningServer) -> None:
    """Over the message rate, overtaken snapshots are `rate_limited`; the last is answered."""
    async with connected(limited_server) as (socket, hello):
        assert hello["max_messages_per_s"] == 5
        for seq in range(20):
            await socket.send(snapshot(seq))
        messages = await until_seq(socket, 19)
        limited = [message for message in messages if message.get("code") == "rate_limited"]
        assert limited
        assert all(message["seq"] < 19 for message in limited)
        assert_prediction(messages[-1], 19)
        predictions = [message["seq"] for message in messages if message["type"] == "prediction"]
        assert predictions == sorted(set(predictions))
        await assert_recovers(socket, limited_server, 20)


async def test_connections_over_the_limit_are_refused(limited_server: RunningServer) -> None:
    """Past `max_connections`, a connection is closed with 1013; the others carry on."""
    open_pattern = "digits_open_connections"
    await until_metric(limited_server, open_pattern, lambda value: value == 0)
    async with connected(limited_server) as (first, _), connected(limited_server):
        async with connect(limited_server.ws_url, open_timeout=TIMEOUT_S) as refused:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(refused.recv(), TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        await assert_recovers(first, limited_server, 0)
    await until_metric(limited_server, open_pattern, lambda value: value == 0)
    async with connected(limited_server) as (socket, _):
        await assert_recovers(socket, limited_server, 0)


async def test_client_that_vanishes_is_dropped(limited_server: RunningServer) -> None:
    """A client that never answers pings (gone without a close) is disconnected."""
    await until_metric(limited_server, "digits_open_connections", lambda value: value == 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", limited_server.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), TIMEOUT_S)).startswith(b"HTTP/1.1 101")
    await until_metric(limited_server, "digits_open_connections", lambda value: value == 1)
    # Read the hello and the pings, answer nothing, until the server hangs up.
    async with asyncio.timeout(TIMEOUT_S):
        while await reader.read(65536):
            pass
    writer.close()
    await until_metric(limited_server, "digits_open_connections", lambda value: value == 0)


async def test_only_ws_accepts_upgrades(server: RunningServer) -> None:
    """A WebSocket upgrade anywhere but `/ws` is refused."""
    for path in ("/", "/api/predict", "/elsewhere"):
        with pytest.raises(InvalidStatus):
            async with connect(server.ws_url.removesuffix("/ws") + path, open_timeout=TIMEOUT_S):
                pass


async def test_sigterm_answers_pending_snapshots_then_closes_1001(
    server_factory: Callable[..., RunningServer],
) -> None:
    """On SIGTERM, a snapshot still waiting out its debounce is answered, then 1001."""
    running = server_factory("--debounce-ms", "3000", "--max-wait-ms", "3000")
    received = 'digits_snapshots_received_total\\{transport="ws"\\}'
    async with connected(running) as (socket, _):
        await socket.send(SEVEN)
        await until_metric(running, received, lambda value: value == 1)
        running.process.terminate()
        assert_prediction(await receive(socket), 0)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(running.process.wait, TIMEOUT_S) == 0
