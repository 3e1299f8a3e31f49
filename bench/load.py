"""WebSocket load: drawers streaming snapshots, closed-loop saturation, and /healthz probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import ClientConnection, connect

ANSWER_TIMEOUT_S = 10.0
# PNG snapshots do not compress: permessage-deflate would only cost this generator, which
# shares the server's cores, most of its CPU (a browser compresses on its own machine).
COMPRESSION = None


@dataclass
class LoadResult:
    """What the drawers saw."""

    update_latencies_ms: list[float] = field(default_factory=list)
    final_latencies_ms: list[float] = field(default_factory=list)
    snapshots_sent: int = 0
    predictions: int = 0
    errors: int = 0
    unanswered_finals: int = 0  # A session's very last snapshot, never answered.
    overtaken_finals: int = 0  # A drawing's last snapshot, overtaken by the next drawing.
    duration_s: float = 0.0


class Drawer:
    """One connection: sends snapshots, matches predictions to send times by seq."""

    def __init__(self, socket: ClientConnection, result: LoadResult) -> None:
        self.socket = socket
        self.result = result
        self.seq = -1
        self.sent_at: dict[int, float] = {}
        self.answered: dict[int, asyncio.Future[float | None]] = {}

    async def send(self, snapshot: bytes) -> int:
        """Send one binary snapshot (its seq is the previous one + 1); returns the seq."""
        self.seq += 1
        self.sent_at[self.seq] = time.perf_counter()
        await self.socket.send(snapshot)
        self.result.snapshots_sent += 1
        return self.seq

    async def send_and_expect(self, snapshot: bytes) -> asyncio.Future[float | None]:
        """Send a snapshot; the future gets its answer's latency, or None if overtaken."""
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        # Registered before sending, so that an answer can never arrive unexpected.
        self.answered[self.seq + 1] = future
        await self.send(snapshot)
        return future

    async def read(self) -> None:
        """Record every prediction's latency since its snapshot was sent."""
        async for message in self.socket:
            payload = json.loads(message)
            if payload.get("type") == "prediction":
                seq = payload["seq"]
                sent = self.sent_at.pop(seq, None)
                if sent is None:
                    self.result.errors += 1
                    continue
                latency = (time.perf_counter() - sent) * 1000.0
                for older in [old for old in self.sent_at if old < seq]:
                    del self.sent_at[older]
                self.result.predictions += 1
                self.result.update_latencies_ms.append(latency)
                for waited in [number for number in self.answered if number <= seq]:
                    future = self.answered.pop(waited)
                    if not future.done():
                        # None: a newer snapshot overtook this one (latest wins).
                        future.set_result(latency if waited == seq else None)
            elif payload.get("type") == "error":
                self.result.errors += 1


async def stream_drawings(
    url: str,
    drawings: list[list[bytes]],
    duration_s: float,
    interval_s: float,
    pause_s: float,
    result: LoadResult,
    start_delay_s: float,
) -> None:
    """Draw digit after digit: a snapshot every `interval_s`, a pause after each pen-up."""
    await asyncio.sleep(start_delay_s)
    try:
        async with connect(
            url, max_size=None, compression=COMPRESSION, open_timeout=ANSWER_TIMEOUT_S
        ) as socket:
            await socket.recv()  # hello
            drawer = Drawer(socket, result)
            reader = asyncio.create_task(drawer.read())
            deadline = time.perf_counter() + duration_s
            finals: list[asyncio.Future[float | None]] = []
            tick = time.perf_counter()
            index = 0
            while time.perf_counter() < deadline:
                snapshots = drawings[index % len(drawings)]
                index += 1
                for snapshot in snapshots[:-1]:
                    await drawer.send(snapshot)
                    tick += interval_s
                    await asyncio.sleep(max(0.0, tick - time.perf_counter()))
                # Pen up: the drawing's last snapshot should be answered unless the next
                # drawing overtakes it; the session's very last one must be answered.
                finals.append(await drawer.send_and_expect(snapshots[-1]))
                tick += interval_s + pause_s
                await asyncio.sleep(max(0.0, tick - time.perf_counter()))
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    await finals[-1]
            except TimeoutError:
                result.unanswered_finals += 1
            for final in finals:
                if final.done() and final.result() is not None:
                    result.final_latencies_ms.append(final.result())
                elif final.done():
                    result.overtaken_finals += 1
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    except (OSError, TimeoutError, ConnectionError) as error:
        result.errors += 1
        print(f"  drawer failed: {error}")
    except Exception as error:
        result.errors += 1
        print(f"  drawer failed: {type(error).__name__}: {error}")


async def run_drawers(
    url: str,
    drawings: list[list[bytes]],
    clients: int,
    duration_s: float,
    interval_s: float = 0.05,
    pause_s: float = 0.0,
) -> LoadResult:
    """`clients` drawers streaming at once for `duration_s` (starts spread over one interval)."""
    result = LoadResult()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            stream_drawings(
                url,
                drawings[number::clients] or drawings,
                duration_s,
                interval_s,
                pause_s,
                result,
                start_delay_s=interval_s * number / clients,
            )
            for number in range(clients)
        )
    )
    result.duration_s = time.perf_counter() - started
    return result


async def idle_client(
    url: str, drawings: list[list[bytes]], rounds: int, pause_s: float
) -> list[float]:
    """One client alone: milliseconds from a drawing's last snapshot to its answer."""
    result = LoadResult()
    latencies = []
    async with connect(url, max_size=None, compression=COMPRESSION) as socket:
        await socket.recv()
        drawer = Drawer(socket, result)
        reader = asyncio.create_task(drawer.read())
        for number in range(rounds):
            answer = await drawer.send_and_expect(drawings[number % len(drawings)][-1])
            latency = await asyncio.wait_for(answer, ANSWER_TIMEOUT_S)
            assert latency is not None, "a lone snapshot was never answered"
            latencies.append(latency)
            await asyncio.sleep(pause_s)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return latencies


async def saturate(url: str, drawings: list[list[bytes]], clients: int, duration_s: float) -> float:
    """Closed loop: each client sends a full drawing and waits for its answer; predictions/s."""
    result = LoadResult()

    async def loop(number: int) -> None:
        async with connect(url, max_size=None, compression=COMPRESSION) as socket:
            await socket.recv()
            drawer = Drawer(socket, result)
            reader = asyncio.create_task(drawer.read())
            deadline = time.perf_counter() + duration_s
            index = number
            while time.perf_counter() < deadline:
                answer = await drawer.send_and_expect(drawings[index % len(drawings)][-1])
                index += clients
                await asyncio.wait_for(answer, ANSWER_TIMEOUT_S)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    started = time.perf_counter()
    await asyncio.gather(*(loop(number) for number in range(clients)))
    return result.predictions / (time.perf_counter() - started)


async def probe_health(base_url: str, stop: asyncio.Event, interval_s: float = 0.1) -> list[float]:
    """GET /healthz every `interval_s` until stopped; milliseconds per answer."""
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=ANSWER_TIMEOUT_S) as http:
        while not stop.is_set():
            started = time.perf_counter()
            response = await http.get("/healthz")
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000.0)
            await asyncio.sleep(interval_s)
    return latencies
