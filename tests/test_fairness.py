"""Fair under hostile load, against real server processes: costly clients are held to their
share, answers leave in seq order, uploads wait in a bounded queue, and a dead decode process
is the server's fault, replaced once."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import signal
from collections.abc import Callable
from typing import Any

import httpx
import psutil
from PIL import Image, ImageDraw
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIMEOUT_S, RunningServer
from tests.drawing import pen_path
from tests.pictures import CANVAS_SIZE, digit_png
from tests.test_ink import ink, stroke_chunks
from tests.test_server_ws import connected, metric, receive, until_seq

# The costliest valid strokes message: the largest canvas, the widest pen, the most points.
HOSTILE_STROKES = {
    "type": "strokes",
    "width": 4096,
    "height": 4096,
    "line_width": 200,
    "strokes": [[[(index * 37) % 4096, (index * 91) % 4096] for index in range(20_000)]],
}


# The costliest drawing to split: twenty zig-zag strokes side by side (never one digit, so
# always split), with the limit's 20,000 points between them.
HOSTILE_NUMBER = {
    "type": "strokes",
    "width": 4096,
    "height": 4096,
    "line_width": 40,
    "strokes": [
        [[200 * piece + 20 + 120 * (index % 2), 500 + 3 * index] for index in range(1000)]
        for piece in range(20)
    ],
}


async def draw_ink(socket: ClientConnection, digit: int, first_seq: int, pause_s: float) -> int:
    """Stream a digit as ink, a chunk every `pause_s`; returns the last seq sent."""
    seq = first_seq
    for stroke, points in stroke_chunks(digit):
        await socket.send(ink(seq, stroke, points))
        seq += 1
        await asyncio.sleep(pause_s)
    return seq - 1


async def send_forty(socket: ClientConnection, message: str) -> None:
    """Send a message (with `"seq":0`) 40 times, renumbered, 20 a second: a tenth of the
    message limit."""
    for seq in range(40):
        await socket.send(message.replace('"seq":0', f'"seq":{seq}', 1))
        await asyncio.sleep(0.05)


async def draw_digits(server: RunningServer) -> list[dict[str, Any]]:
    """A person drawing 7, 1, 4, 7 as ink, clearing after each; every message answered."""
    async with connected(server) as (socket, _):
        answers: list[dict[str, Any]] = []
        seq = 0
        for digit in (7, 1, 4, 7):
            last = await draw_ink(socket, digit, seq, pause_s=0.05)
            answers += await until_seq(socket, last)
            await socket.send(json.dumps({"type": "clear", "seq": last + 1}))
            answers += await until_seq(socket, last + 1)
            seq = last + 2
        return answers


async def test_an_error_never_overtakes_an_older_prediction(server: RunningServer) -> None:
    """The error for seq 1 leaves after the prediction for seq 0, though it is ready first."""
    async with connected(server) as (socket, _):
        await socket.send(digit_png(7))
        await socket.send(json.dumps({"type": "no_such_type", "seq": 1}))
        first, second = await receive(socket), await receive(socket)
    assert (first["type"], first["seq"]) == ("prediction", 0)
    assert (second["type"], second["seq"], second["code"]) == ("error", 1, "bad_message")


async def test_costly_messages_are_held_to_the_connections_share(
    server_factory: Callable[..., RunningServer],
) -> None:
    """Valid strokes at the limits, far under the message rate, are rate-limited by cost.

    Meanwhile another connection's ink is answered without a single error.
    """
    # A small budget, so that the attack is over it however fast this machine parses.
    server = server_factory("--rate-limit-close-after-s", "60", "--max-cost-ms-per-s", "40")
    refused: list[dict[str, Any]] = []

    async def attack() -> None:
        async with connected(server) as (socket, _):
            await send_forty(socket, hostile)
            # Its newest message is answered only once its debt is paid: wait for refusals.
            async with asyncio.timeout(3 * TIMEOUT_S):
                async for text in socket:
                    message = json.loads(text)
                    if message["type"] == "error":
                        refused.append(message)
                        break

    hostile = json.dumps({**HOSTILE_STROKES, "seq": 0}, separators=(",", ":"))
    _, victim = await asyncio.gather(attack(), draw_digits(server))
    assert refused, "strokes at the limits were never rate-limited"
    assert {message["code"] for message in refused} == {"rate_limited"}
    assert [message for message in victim if message["type"] == "error"] == []
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        assert (await http.get(f"{server.http_url}/healthz")).status_code == 200


async def test_splitting_is_paid_by_the_connection_that_asks_for_it(
    server_factory: Callable[..., RunningServer],
) -> None:
    """Drawings that are split every time (twenty pieces at the point limit) are charged to
    their sender: it is rate-limited while another connection's ink is answered without a
    single error."""
    server = server_factory("--rate-limit-close-after-s", "60", "--max-cost-ms-per-s", "40")
    hostile = json.dumps({**HOSTILE_NUMBER, "seq": 0}, separators=(",", ":"))
    refused: list[dict[str, Any]] = []
    read: list[dict[str, Any]] = []

    async def attack() -> None:
        async with connected(server) as (socket, _):
            await send_forty(socket, hostile)
            async with asyncio.timeout(3 * TIMEOUT_S):
                async for text in socket:
                    message = json.loads(text)
                    (refused if message["type"] == "error" else read).append(message)
                    if refused and read:
                        break

    _, victim = await asyncio.gather(attack(), draw_digits(server))
    splits = await metric(server, 'digits_splits_total\\{passes="two"\\}')
    assert splits >= 1, "the hostile drawing was split"
    assert read and read[0]["digit"] is None and read[0]["number"]["text"]
    assert {message["code"] for message in refused} == {"rate_limited"}
    assert [message for message in victim if message["type"] == "error"] == []


async def test_persistent_costly_client_is_closed_with_1008(
    server_factory: Callable[..., RunningServer],
) -> None:
    """A client that keeps sending costly messages over its share is closed (1008)."""
    server = server_factory("--rate-limit-close-after-s", "1", "--max-cost-ms-per-s", "40")
    hostile = json.dumps({**HOSTILE_STROKES, "seq": 0}, separators=(",", ":"))
    async with connected(server) as (socket, _):
        try:
            async with asyncio.timeout(TIMEOUT_S):
                for seq in range(1000):
                    await socket.send(hostile.replace('"seq":0', f'"seq":{seq}', 1))
                    await asyncio.sleep(0.05)
        except ConnectionClosed:
            pass
        await asyncio.wait_for(socket.wait_closed(), TIMEOUT_S)
    assert socket.close_code == 1008
    assert await metric(server, r'digits_connections_closed_total\{reason="rate_limited"\}') == 1


def large_png(side: int = 2048) -> bytes:
    """A big drawing that compresses small but costs tens of milliseconds to decode."""
    picture = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(picture).line([(side // 4, side // 5), (side // 2, side * 4 // 5)], "black", 60)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_uploads_past_the_queue_get_503_at_once(
    server_factory: Callable[..., RunningServer],
) -> None:
    """With 2 uploads admitted at a time, a flood gets 503 overloaded with Retry-After."""
    server = server_factory("--max-waiting-uploads", "2")
    picture = large_png()
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:

        async def post() -> httpx.Response:
            return await http.post(
                f"{server.http_url}/api/predict",
                content=picture,
                headers={"Content-Type": "image/png"},
            )

        responses = await asyncio.gather(*(post() for _ in range(24)))
        statuses = sorted(response.status_code for response in responses)
        assert set(statuses) == {200, 503}, statuses
        for response in responses:
            if response.status_code == 503:
                assert response.json()["error"]["code"] == "overloaded"
                assert response.headers["Retry-After"] == "1"
        assert (await post()).status_code == 200
        limits = (await http.get(f"{server.http_url}/metrics")).text
    assert 'digits_limit{name="max_waiting_uploads"} 2.0' in limits


def decode_processes(server: RunningServer) -> list[psutil.Process]:
    """The server's decode processes (spawned workers of its process pool)."""
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


async def draw_path(
    socket: ClientConnection, strokes: list[list[tuple[float, float]]], first_seq: int
) -> int:
    """Stream strokes as ink, six points a message every 20 ms; returns the last seq sent."""
    seq = first_seq
    for index, stroke in enumerate(strokes):
        for start in range(0, len(stroke), 6):
            await socket.send(ink(seq, index, [list(point) for point in stroke[start : start + 6]]))
            seq += 1
            await asyncio.sleep(0.02)
    return seq - 1


async def test_killed_decode_process_is_replaced_once_and_blames_nobody(
    server_factory: Callable[..., RunningServer],
) -> None:
    """SIGKILL of a decode process under 16 drawers: one restart, no bad_image, all answered."""
    server = server_factory()
    before = decode_processes(server)
    assert len(before) == 2
    killed = asyncio.Event()
    started = asyncio.Event()

    async def drawer(index: int) -> list[dict[str, Any]]:
        generator = random.Random(index)
        async with connected(server) as (socket, _):
            answers: list[dict[str, Any]] = []
            seq, after_kill = 0, 0
            # Draw until two drawings have been made after the kill.
            while after_kill < 2:
                after_kill += killed.is_set()
                strokes = pen_path(generator.randrange(10), generator, (CANVAS_SIZE,) * 2, 120)
                last = await draw_path(socket, strokes, seq)
                started.set()
                answers += await until_seq(socket, last)
                # A drawing answered `internal` is sent again, as the protocol allows.
                if answers[-1]["type"] == "error":
                    last += 1
                    await socket.send(ink(last, len(strokes) - 1, []))
                    answers += await until_seq(socket, last)
                assert answers[-1]["type"] == "prediction", answers[-1]
                await socket.send(json.dumps({"type": "clear", "seq": last + 1}))
                answers += await until_seq(socket, last + 1)
                seq = last + 2
            return answers

    async def kill() -> None:
        await started.wait()
        os.kill(before[0].pid, signal.SIGKILL)
        killed.set()

    results = await asyncio.gather(kill(), *(drawer(index) for index in range(16)))
    answers = [answer for result in results[1:] if result for answer in result]
    codes = [answer["code"] for answer in answers if answer["type"] == "error"]
    assert "bad_image" not in codes
    assert set(codes) <= {"internal"}
    assert await metric(server, "digits_decode_restarts_total") == 1
    # The broken pool's other process ends within moments of the new pool's start.
    async with asyncio.timeout(TIMEOUT_S):
        while len(after := decode_processes(server)) != 2:
            await asyncio.sleep(0.1)
    assert not {process.pid for process in before} & {process.pid for process in after}
