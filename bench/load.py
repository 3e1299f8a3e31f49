"""The load generator: drawers replaying recorded page traffic, closed-loop saturation, probes.

Owns:
- `Tally`, what a group of drawers saw (picklable, so that drawers can run in several
  processes and be added up);
- `Replay`, one drawing ready to send: ink updates re-sequenced per connection (text frames)
  or page-format PNG frames (binary, whose seq is the previous one's + 1);
- the drawer: it sends a drawing's updates at their recorded times (20 a second while the pen
  moves), rests as a person does, and matches every answer to the updates it covers: an
  answer with seq N covers every update up to N not yet covered, so an update the server
  skipped (latest wins) counts with the latency to the answer that covered it;
- `run_drawers` (an open-loop job, run in a process of its own) and `run_saturation` (closed
  loop: each client sends its next update once the previous one is answered);
- `probe_health`, `/healthz` every 100 ms from the orchestrating process.

Every frame is encoded before the run (a text frame costs one concatenation for its seq),
and no connection negotiates permessage-deflate: the generator shares the server's cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.drawings import Drawing, Update, make_update
from bench.measure import summed

ANSWER_TIMEOUT_S = 10.0
# Ink is small and PNGs do not compress: permessage-deflate would only cost this generator,
# which shares the server's cores, CPU it then takes from the server. Browsers offer it and
# Hypercorn accepts it, though: `python -m bench --deflate` (an environment variable, so
# that the spawned generator processes see it too) measures what the page's frames cost.
DEFLATE_VARIABLE = "DIGITS_BENCH_DEFLATE"
COMPRESSION = "deflate" if os.environ.get(DEFLATE_VARIABLE) == "1" else None
CLEAR = make_update(0.0, "clear", {})
CLEAR_TO_DRAW_S = 0.3


@dataclass
class Tally:
    """What a group of drawers saw; tallies from several processes add up with `merge`."""

    update_latencies_ms: list[float] = field(default_factory=list)
    last_update_latencies_ms: list[float] = field(default_factory=list)
    # The server's own `latency_ms` (from receiving the answered update to sending the answer).
    server_latencies_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)
    updates_sent: int = 0
    answers: int = 0
    drawings: int = 0
    # A drawing's last update (pen-up) answered with its own seq, covered only by the answer
    # to a newer update, or never answered.
    drawings_answered: int = 0
    drawings_overtaken: int = 0
    drawings_unanswered: int = 0
    digits_right: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    connect_failures: int = 0
    dropped: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    processes: int = 1

    def merge(self, other: Tally) -> Tally:
        """The sum of two tallies (CPU adds up; wall time is the longer)."""
        return summed(self, other)


@dataclass(frozen=True)
class Replay:
    """One drawing ready to send: when each update goes out, and its frame."""

    expected: str  # The right reading of the drawing: its digit, or its number.
    times_s: tuple[float, ...]
    frames: tuple[Update | bytes, ...]  # Ink text (seq added when sent) or a binary PNG.
    first_on_connection: int  # Index to start at on a fresh connection (after the clear).

    @classmethod
    def ink(cls, drawing: Drawing) -> Replay:
        """The page's ink messages."""
        return cls._starting_with_clear(drawing, drawing.updates, CLEAR)

    @classmethod
    def pictures(cls, drawing: Drawing, frames: Sequence[bytes], blank: bytes) -> Replay:
        """The page's PNG of the canvas after each ink message, as binary frames."""
        return cls._starting_with_clear(drawing, tuple(frames), blank)

    @classmethod
    def _starting_with_clear(
        cls, drawing: Drawing, frames: Sequence[Update | bytes], clear: Update | bytes
    ) -> Replay:
        """Every drawing but a connection's first begins with the clear that wiped the last.

        The first drawing recorded on a page has none; it gets one `CLEAR_TO_DRAW_S` before
        its first stroke, as the recorder's other drawings have.
        """
        times = tuple(update.at_s for update in drawing.updates)
        if drawing.updates[0].kind != "clear":
            times = (0.0, *(at_s + CLEAR_TO_DRAW_S for at_s in times))
            frames = (clear, *frames)
        return cls(drawing.expected, times, tuple(frames), first_on_connection=1)


class Drawer:
    """One connection: sends updates, and matches answers to them by seq."""

    def __init__(self, socket: ClientConnection, tally: Tally) -> None:
        self.socket = socket
        self.tally = tally
        self.seq = -1
        # (seq, sent at, the right reading if it is a drawing's last update else None).
        self.pending: deque[tuple[int, float, str | None]] = deque()
        self.settled = asyncio.Event()
        self.settled.set()
        self.closing = False

    async def send(self, frame: Update | bytes, last_of: str | None = None) -> int:
        """Send one update with the next seq; returns the seq."""
        self.seq += 1
        sent_at = time.monotonic()
        self.pending.append((self.seq, sent_at, last_of))
        self.settled.clear()
        if isinstance(frame, bytes):
            await self.socket.send(frame)
        else:
            await self.socket.send(frame.encode(self.seq), text=True)
        self.tally.updates_sent += 1
        return self.seq

    async def read(self) -> None:
        """Cover pending updates with each answer; note errors and a connection that drops."""
        tally = self.tally
        try:
            async for message in self.socket:
                now = time.monotonic()
                payload = json.loads(message)
                kind = payload.get("type")
                if kind == "prediction":
                    tally.answers += 1
                    tally.server_latencies_ms.append(payload.get("latency_ms", float("nan")))
                    self.cover(payload["seq"], reading(payload), now)
                elif kind == "error":
                    tally.errors[str(payload.get("code"))] += 1
        except ConnectionClosed:
            pass
        if not self.closing:
            tally.dropped += 1
            tally.close_codes[str(self.socket.close_code)] += 1

    def cover(self, seq: int, read: str | None, now: float) -> None:
        """An answer with `seq` covers every pending update up to it."""
        tally = self.tally
        pending = self.pending
        while pending and pending[0][0] <= seq:
            number, sent_at, last_of = pending.popleft()
            latency_ms = (now - sent_at) * 1000.0
            tally.update_latencies_ms.append(latency_ms)
            if last_of is not None:
                tally.last_update_latencies_ms.append(latency_ms)
                if number == seq:
                    tally.drawings_answered += 1
                    tally.digits_right += read == last_of
                else:
                    tally.drawings_overtaken += 1
        if not pending:
            self.settled.set()

    async def settle(self, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        """Wait until every update is covered (or the timeout); count what never was."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.settled.wait()
        self.tally.drawings_unanswered += sum(last is not None for _, _, last in self.pending)


def reading(prediction: dict[str, Any]) -> str | None:
    """What a prediction reads: its number's text (v2), else its digit."""
    number = prediction.get("number")
    if isinstance(number, dict):
        return str(number.get("text"))
    digit = prediction.get("digit")
    return None if digit is None else str(digit)


def process_id(pause_s: float) -> int:
    """This process's id, after a pause that leaves the next task to another process."""
    time.sleep(pause_s)
    return os.getpid()


async def sleep_until(moment: float) -> float:
    """Sleep until `time.monotonic()` reaches `moment`; returns how late we woke, in s."""
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    return time.monotonic() - moment


async def open_drawer(url: str, tally: Tally) -> tuple[Drawer, asyncio.Task[None]] | None:
    """Connect, read the hello and start reading; None (counted) when the server refused."""
    try:
        socket = await connect(
            url,
            compression=COMPRESSION,
            max_size=None,
            open_timeout=ANSWER_TIMEOUT_S,
            # Browsers send no pings; a late pong under load would close the drawer's side.
            ping_interval=None,
        )
        await asyncio.wait_for(socket.recv(), ANSWER_TIMEOUT_S)
    except (OSError, TimeoutError, InvalidStatus, ConnectionClosed):
        tally.connect_failures += 1
        return None
    tally.connections += 1
    drawer = Drawer(socket, tally)
    return drawer, asyncio.create_task(drawer.read())


async def close_drawer(drawer: Drawer, reader: asyncio.Task[None]) -> None:
    """Close our side and wait for the reader."""
    drawer.closing = True
    with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
        await asyncio.wait_for(drawer.socket.close(), ANSWER_TIMEOUT_S)
    with contextlib.suppress(asyncio.CancelledError):
        await reader


async def draw(drawer: Drawer, replay: Replay, first: bool) -> None:
    """Send one drawing's updates at their recorded times."""
    start = replay.first_on_connection if first else 0
    frames = replay.frames
    last = len(frames) - 1
    began = time.monotonic() - replay.times_s[start]
    for index in range(start, len(frames)):
        lag_s = await sleep_until(began + replay.times_s[index])
        drawer.tally.send_lag_ms.append(lag_s * 1000.0)
        await drawer.send(frames[index], replay.expected if index == last else None)
    drawer.tally.drawings += 1


@dataclass(frozen=True)
class Schedule:
    """When one drawer connects, draws and rests."""

    connect_at: float  # time.monotonic()
    first_drawing_at: float
    end_at: float  # No drawing starts after this.
    rest_s: tuple[float, float]  # Uniform rest between drawings (seeded).
    drawings: int | None = None  # Stop after this many (None: until end_at).
    linger_s: float = 0.0  # Stay connected this long after the last drawing.


async def drawer_session(
    url: str, replays: Sequence[Replay], schedule: Schedule, tally: Tally, seed: int
) -> None:
    """One person at the page: connect, draw digit after digit with rests, then leave."""
    rng = random.Random(seed)
    await sleep_until(schedule.connect_at)
    opened = await open_drawer(url, tally)
    if opened is None:
        return
    drawer, reader = opened
    try:
        await sleep_until(schedule.first_drawing_at)
        count = 0
        while not reader.done():
            await draw(drawer, replays[rng.randrange(len(replays))], first=count == 0)
            count += 1
            rest_s = rng.uniform(*schedule.rest_s)
            if schedule.drawings is not None and count >= schedule.drawings:
                break
            if time.monotonic() + rest_s > schedule.end_at:
                break
            await asyncio.sleep(rest_s)
        # Resting: the answer to the last update may come meanwhile, and the connection must
        # stay open all along.
        rest_until = time.monotonic() + schedule.linger_s
        await drawer.settle(ANSWER_TIMEOUT_S + schedule.linger_s)
        if not reader.done():
            await sleep_until(rest_until)
    except ConnectionClosed:
        await drawer.settle(0.0)
    finally:
        await close_drawer(drawer, reader)


def run_drawers(
    url: str,
    replays: Sequence[Replay],
    schedules: Sequence[Schedule],
    seed: int,
) -> Tally:
    """A process's share of the drawers, one per schedule (run in a process of its own)."""
    tally = Tally()

    async def main() -> None:
        await asyncio.gather(
            *(
                drawer_session(url, replays, schedule, tally, seed * 100_003 + number)
                for number, schedule in enumerate(schedules)
            )
        )

    started_cpu = time.process_time()
    asyncio.run(main())
    tally.cpu_s = time.process_time() - started_cpu
    # From the first connection on: the time the drawers were at it.
    tally.wall_s = time.monotonic() - min(schedule.connect_at for schedule in schedules)
    return tally


def run_saturation(
    url: str, replays: Sequence[Replay], clients: int, start_at: float, duration_s: float, seed: int
) -> Tally:
    """Closed loop: each client sends its next update as soon as the previous is answered."""
    tally = Tally()

    async def client(number: int) -> None:
        rng = random.Random(seed * 100_003 + number)
        await sleep_until(start_at + number * 0.01)
        opened = await open_drawer(url, tally)
        if opened is None:
            return
        drawer, reader = opened
        deadline = start_at + duration_s
        first = True
        try:
            while time.monotonic() < deadline and not reader.done():
                replay = replays[rng.randrange(len(replays))]
                start = replay.first_on_connection if first else 0
                first = False
                last = len(replay.frames) - 1
                for index in range(start, len(replay.frames)):
                    expected = replay.expected if index == last else None
                    await drawer.send(replay.frames[index], expected)
                    async with asyncio.timeout(ANSWER_TIMEOUT_S):
                        await drawer.settled.wait()
                    if time.monotonic() >= deadline:
                        break
                tally.drawings += 1
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            await close_drawer(drawer, reader)

    async def main() -> None:
        await asyncio.gather(*(client(number) for number in range(clients)))

    started_cpu = time.process_time()
    asyncio.run(main())
    tally.cpu_s = time.process_time() - started_cpu
    tally.wall_s = time.monotonic() - start_at
    return tally


@dataclass
class Health:
    """What the `/healthz` probe saw."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0


async def probe_health(base_url: str, stop: asyncio.Event, interval_s: float = 0.1) -> Health:
    """GET /healthz every `interval_s` until stopped."""
    health = Health()
    async with httpx.AsyncClient(base_url=base_url, timeout=ANSWER_TIMEOUT_S) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = await http.get("/healthz")
            except httpx.HTTPError:
                health.failures += 1
            else:
                if response.status_code == 200:
                    health.latencies_ms.append((time.monotonic() - started) * 1000.0)
                else:
                    health.failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    return health
