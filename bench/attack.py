"""Attackers for `python -m bench --attack`: the costliest valid messages, sent without pause.

Owns the attack payloads and the attackers that send them, each run in a process of its own:
- `strokes`: a v1 strokes message at every limit (4096x4096 canvas, line width 200, 20,000
  points spread over the canvas, about 819 kB of JSON), pre-encoded around its seq, from 2
  connections at 20 a second each;
- `pictures`: a 4096x4096 PNG (`max_pixels`), mostly blank with one big digit, so that it
  compresses far below `max_bytes`, as binary frames from 2 connections at 20 a second;
- `uploads`: 32 HTTP clients posting `POST /api/predict` as fast as they are answered, half
  of them the page's PNG of a recorded desktop drawing and half the 4096x4096 picture.
An attacker reads every answer, counts what it got (predictions, each error code, HTTP
statuses, close codes) and reconnects at once when the server closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from PIL import Image, ImageDraw
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.drawings import Update
from bench.load import ANSWER_TIMEOUT_S, COMPRESSION
from bench.measure import summed

CANVAS_SIDE = 4096
MAX_LINE_WIDTH = 200.0
MAX_POINTS = 20_000
SOCKET_RATE_HZ = 20.0
SOCKET_ATTACKERS = 2
UPLOAD_CLIENTS = 32
RECONNECT_PAUSE_S = 0.05


def strokes_at_the_limits(seed: int = 7) -> Update:
    """A strokes message at every limit: a random walk of 20,000 points over the canvas.

    Coordinates keep all their decimals and the JSON its default spaces, as a careless
    client's would, so the message is about 819 kB: near `max_bytes` yet valid.
    """
    rng = random.Random(seed)
    x, y = CANVAS_SIDE / 2, CANVAS_SIDE / 2
    points = []
    for _ in range(MAX_POINTS):
        x = min(CANVAS_SIDE - 1.0, max(0.0, x + rng.uniform(-60.0, 60.0)))
        y = min(CANVAS_SIDE - 1.0, max(0.0, y + rng.uniform(-60.0, 60.0)))
        points.append([x + rng.random() * 1e-9, y + rng.random() * 1e-9])
    strokes = [points[start : start + 1000] for start in range(0, MAX_POINTS, 1000)]
    message = {
        "width": CANVAS_SIDE,
        "height": CANVAS_SIDE,
        "line_width": MAX_LINE_WIDTH,
        "strokes": strokes,
    }
    text = json.dumps({"type": "strokes", "seq": -1, **message})
    prefix, _, suffix = text.partition('"seq": -1')
    return Update(0.0, "strokes", message, (prefix + '"seq": ').encode(), suffix.encode())


def picture_at_the_limits() -> bytes:
    """A 4096x4096 RGB PNG (`max_pixels`): white, with one digit drawn big across it."""
    picture = Image.new("RGB", (CANVAS_SIDE, CANVAS_SIDE), "white")
    draw = ImageDraw.Draw(picture)
    side = CANVAS_SIDE
    points = [(0.3 * side, 0.25 * side), (0.7 * side, 0.25 * side), (0.45 * side, 0.8 * side)]
    draw.line(points, fill="black", width=side // 14, joint="curve")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class AttackTally:
    """What the attackers sent and what they got back."""

    sent: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    predictions: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    connect_failures: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    http_statuses: Counter[str] = field(default_factory=Counter)
    http_failures: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def merge(self, other: AttackTally) -> AttackTally:
        """The sum of two tallies (CPU adds up; wall time is the longer)."""
        return summed(self, other)


async def socket_attacker(
    url: str, kind: str, frame: Update | bytes, end_at: float, tally: AttackTally
) -> None:
    """Send `frame` 20 times a second until `end_at`, reconnecting whenever closed."""
    interval_s = 1.0 / SOCKET_RATE_HZ
    while time.monotonic() < end_at:
        try:
            socket = await connect(
                url,
                compression=COMPRESSION,
                max_size=None,
                open_timeout=ANSWER_TIMEOUT_S,
                ping_interval=None,
            )
        except (OSError, TimeoutError, InvalidStatus):
            tally.connect_failures += 1
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        tally.connections += 1

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in socket:  # noqa: B023 (this connection's socket)
                    payload = json.loads(message)
                    if payload.get("type") == "prediction":
                        tally.predictions += 1
                    elif payload.get("type") == "error":
                        tally.errors[str(payload.get("code"))] += 1

        reader = asyncio.create_task(read())
        seq = 0
        tick = time.monotonic()
        closed_by_server = False
        try:
            while time.monotonic() < end_at and not reader.done():
                data = frame if isinstance(frame, bytes) else frame.encode(seq)
                async with asyncio.timeout(max(0.01, end_at - time.monotonic())):
                    await socket.send(data, text=not isinstance(frame, bytes))
                seq += 1
                tally.sent[kind] += 1
                tally.bytes_sent += len(data)
                # Open loop at the rate, without bursts to catch up after a blocked send.
                tick = max(tick + interval_s, time.monotonic())
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
        except ConnectionClosed:
            closed_by_server = True
        except TimeoutError:
            pass
        if closed_by_server or reader.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, ANSWER_TIMEOUT_S)
            tally.close_codes[str(socket.close_code)] += 1
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            await asyncio.wait_for(socket.close(), 2.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def upload_client(
    http: httpx.AsyncClient, kind: str, body: bytes, end_at: float, tally: AttackTally
) -> None:
    """Post `body` as fast as the server answers until `end_at`; count the statuses."""
    while time.monotonic() < end_at:
        try:
            response = await http.post(
                "/api/predict", content=body, headers={"Content-Type": "image/png"}
            )
        except httpx.HTTPError:
            tally.http_failures += 1
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        tally.sent[kind] += 1
        tally.bytes_sent += len(body)
        tally.http_statuses[str(response.status_code)] += 1


def run_attackers(
    ws_url: str,
    http_url: str,
    kinds: list[str],
    page_picture: bytes,
    start_at: float,
    duration_s: float,
) -> AttackTally:
    """The attackers of `kinds` ("strokes", "pictures", "uploads"), in this process."""
    tally = AttackTally()
    strokes = strokes_at_the_limits() if "strokes" in kinds else None
    big_picture = picture_at_the_limits() if {"pictures", "uploads"} & set(kinds) else b""

    async def main() -> None:
        end_at = start_at + duration_s
        while time.monotonic() < start_at:
            await asyncio.sleep(start_at - time.monotonic())
        attackers = []
        if strokes is not None:
            attackers += [
                socket_attacker(ws_url, "strokes", strokes, end_at, tally)
                for _ in range(SOCKET_ATTACKERS)
            ]
        if "pictures" in kinds:
            attackers += [
                socket_attacker(ws_url, "pictures", big_picture, end_at, tally)
                for _ in range(SOCKET_ATTACKERS)
            ]
        limits = httpx.Limits(
            max_connections=UPLOAD_CLIENTS, max_keepalive_connections=UPLOAD_CLIENTS
        )
        async with httpx.AsyncClient(
            base_url=http_url, timeout=ANSWER_TIMEOUT_S, limits=limits
        ) as http:
            if "uploads" in kinds:
                attackers += [
                    upload_client(
                        http,
                        "upload page picture" if number % 2 == 0 else "upload 4096x4096",
                        page_picture if number % 2 == 0 else big_picture,
                        end_at,
                        tally,
                    )
                    for number in range(UPLOAD_CLIENTS)
                ]
            await asyncio.gather(*attackers)

    started_cpu = time.process_time()
    asyncio.run(main())
    tally.cpu_s = time.process_time() - started_cpu
    tally.wall_s = time.monotonic() - start_at
    return tally
