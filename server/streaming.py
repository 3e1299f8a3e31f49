"""One WebSocket connection: a reader, a processor and a writer around one pending snapshot.

- The reader parses each frame (`MessageParser`; a large one in a thread, so the event loop
  never stops for it), applies ink edits to the connection's drawing (`server/ink.py`),
  answers bad ones with an error and puts good ones in the one-slot "newest pending"
  snapshot, replacing an older one (latest wins).
- Admission counts cost, not only messages (`server/costs.py`): every message spends the
  time its parsing took from the connection's `CostBudget`, and every snapshot decoded its
  estimated work; a connection over `max_messages_per_s` or in debt has its newest snapshot
  held back until both allow; a held snapshot that a
  newer one overtakes is answered `rate_limited`, so the last snapshot before a pause is
  always answered.
- Answers leave in seq order: an error about a message is held back while an older snapshot
  of the connection still waits for its answer.
- The processor waits until the pending snapshot is due, `debounce_ms` after it arrived but
  never later than `max_wait_ms` after the oldest snapshot it replaced, then hands it to the
  shared `InferenceWorker`. One snapshot per connection is in flight at a time, so answers
  leave in the order of their seqs.
- The writer sends from an `Outbox` that keeps only the newest prediction and a few errors,
  so a client that stops reading holds nothing but its own connection.
- `drain()` (graceful shutdown) stops reading, answers what is pending at once and closes
  with 1001 (going away).
- A connection that sends nothing for `idle_timeout_s` is closed with 1000 and reason
  "idle"; one that keeps exceeding its message rate for `rate_limit_close_after_s` (see
  `Persistence`) is closed at once with 1008 (policy violation).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from server.batching import DecodeError, InferenceWorker, Picture, Readings
from server.config import Settings
from server.costs import MESSAGE_MS, drawing_cost_ms, picture_cost_ms
from server.images import ImageError
from server.ink import Drawing
from server.metrics import Metrics
from server.predictions import Prediction
from server.protocol import (
    EncodedSnapshot,
    ErrorCode,
    Limits,
    Message,
    MessageParser,
    ProtocolError,
    StrokesSnapshot,
    error_message,
    prediction_message,
)
from server.ratelimit import CostBudget, Persistence, TokenBucket

logger = logging.getLogger(__name__)

# Text frames longer than this are parsed in a thread: ~1 ms of the event loop at most.
OFF_LOOP_PARSE_CHARS = 64 * 1024
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
POLICY_VIOLATION = 1008


class Connection(Protocol):
    """The part of a server-side WebSocket a session uses (Quart's `Websocket` fits)."""

    async def receive(self) -> str | bytes: ...

    async def send(self, data: str | bytes) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...


@dataclass(frozen=True)
class Arrival:
    """A snapshot or ink edit, when it arrived (`time.monotonic()`) and its decode cost."""

    snapshot: Message
    received_at: float
    decode_ms: float


@dataclass(frozen=True)
class Outgoing:
    """A message waiting for the writer: a prediction to stamp with its latency, or an error."""

    seq: int | None
    received_at: float
    prediction: Prediction | None = None
    error_text: str | None = None


class Outbox:
    """The outgoing queue of one connection: at most one prediction (the newest) and a few errors.

    Messages leave in the order they were put, except that a new prediction replaces a
    queued older one, and the oldest errors are dropped beyond `max_errors`.
    """

    def __init__(self, max_errors: int) -> None:
        self.max_errors = max_errors
        self._items: deque[Outgoing] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._items)

    def put_prediction(self, item: Outgoing) -> bool:
        """Queue a prediction in place of any queued one; returns whether one was replaced."""
        replaced = False
        for queued in self._items:
            if queued.prediction is not None:
                self._items.remove(queued)
                replaced = True
                break
        self._put(item)
        return replaced

    def put_error(self, item: Outgoing) -> None:
        """Queue an error, dropping the oldest queued error when there are too many."""
        errors = [queued for queued in self._items if queued.prediction is None]
        if len(errors) >= self.max_errors:
            self._items.remove(errors[0])
        self._put(item)

    async def get(self) -> Outgoing:
        """The next message to send; call `sent()` once it is sent."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def sent(self) -> None:
        """The message from `get()` has left (or failed to)."""
        if not self._items:
            self._idle.set()

    async def join(self) -> None:
        """Wait until everything queued has been sent."""
        await self._idle.wait()

    def _put(self, item: Outgoing) -> None:
        self._items.append(item)
        self._idle.clear()
        self._ready.set()


class Session:
    """The state and tasks of one WebSocket connection."""

    def __init__(
        self,
        connection: Connection,
        worker: InferenceWorker,
        settings: Settings,
        metrics: Metrics,
        *,
        hello: str,
        include_input: bool = False,
    ) -> None:
        self._connection = connection
        self._worker = worker
        self._settings = settings
        self._metrics = metrics
        self._hello = hello
        self._include_input = include_input
        self._parser = MessageParser(
            Limits(settings.max_message_bytes, settings.max_pixels, settings.max_stroke_points)
        )
        self._drawing = Drawing(settings.max_stroke_points)
        # The model's rows for the groups of this drawing's last split (see the worker).
        self._readings = Readings()
        rate = float(settings.max_messages_per_s)
        self._bucket = TokenBucket(rate, capacity=rate, now=time.monotonic())
        # A refusal less than the bucket's one-second burst after the previous one continues
        # the streak: a client over the rate for a moment gets that second to slow down.
        self._persistence = Persistence(settings.rate_limit_close_after_s, quiet_s=1.0)
        self._budget = CostBudget(
            settings.max_cost_ms_per_s, burst_ms=settings.max_cost_ms_per_s, now=time.monotonic()
        )
        self._idle_timeout_s = settings.idle_timeout_s
        self._outbox = Outbox(settings.max_queued_errors)
        self._debounce_s = settings.debounce_ms / 1000.0
        self._max_wait_s = settings.max_wait_ms / 1000.0
        # The newest snapshot not yet taken, and when the oldest one it replaced arrived.
        self._pending: Arrival | None = None
        self._first_pending_at = 0.0
        self._due_at = 0.0
        # A snapshot held back by the rate limit, and the timer that releases it.
        self._deferred: Arrival | None = None
        self._deferred_timer: asyncio.TimerHandle | None = None
        self._in_flight: Arrival | None = None
        # Errors waiting for an older snapshot's answer, in seq order.
        self._held_errors: deque[Outgoing] = deque()
        # Set by the due timer (a snapshot's debounce is over) and by `drain()`.
        self._changed = asyncio.Event()
        self._due_timer: asyncio.TimerHandle | None = None
        # Prometheus children, bound once: `labels()` takes a lock and a dict lookup.
        self._received = metrics.snapshots_received.labels("ws")
        self._sent = metrics.predictions_sent.labels("ws")
        self._latency = metrics.prediction_latency_seconds.labels("ws")
        self._answered = asyncio.Event()
        self._draining = asyncio.Event()
        # Set to end the connection: by `drain()`, or with the close code and reason of a
        # limit (`_ending`).
        self._end = asyncio.Event()
        self._ending: tuple[int, str] | None = None
        self._closed = asyncio.Event()

    async def run(self) -> None:
        """Serve the connection until the client leaves (cancellation), a limit or `drain()`."""
        try:
            await self._connection.send(self._hello)
            async with asyncio.TaskGroup() as tasks:
                reader = tasks.create_task(self._read())
                processor = tasks.create_task(self._process())
                writer = tasks.create_task(self._write())
                await self._end.wait()
                reader.cancel()
                if self._ending is None:
                    self._release_deferred(force=True)
                    await self._settle()
                    code, reason = GOING_AWAY, "server shutting down"
                else:
                    code, reason = self._ending
                await self._connection.close(code, reason)
                processor.cancel()
                writer.cancel()
        finally:
            for timer in (self._deferred_timer, self._due_timer):
                if timer is not None:
                    timer.cancel()
            self._closed.set()

    def drain(self) -> None:
        """Ask the session to answer what is pending and close with 1001."""
        self._draining.set()
        self._changed.set()
        self._end.set()

    async def wait_closed(self) -> None:
        """Wait until `run()` has finished."""
        await self._closed.wait()

    async def _read(self) -> None:
        """Read frames until the connection ends; close it when it idles too long."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._idle_timeout_s) as idle:
                while not self._end.is_set():
                    frame: str | bytes | None = await self._connection.receive()
                    now = time.monotonic()
                    idle.reschedule(loop.time() + self._idle_timeout_s)
                    # Quart hands over an empty binary frame as None.
                    await self._on_frame(b"" if frame is None else frame, now)
        except TimeoutError:
            self._end_with(NORMAL_CLOSURE, "idle", "idle")

    async def _on_frame(self, frame: str | bytes, now: float) -> None:
        """Parse a frame (a large one in a thread) and act on it.

        A large text frame from a connection whose budget is in debt is refused unread
        (`rate_limited`, seq null, the sequence does not move), so that a client over its
        share cannot make the server parse for it either.
        """
        large = isinstance(frame, str) and len(frame) > OFF_LOOP_PARSE_CHARS
        if large and not self._budget.allows(now):
            if self._persistence.refused(now):
                self._end_with(POLICY_VIOLATION, "rate limit exceeded", "rate_limited")
                return
            budget = self._settings.max_cost_ms_per_s
            explanation = f"over this connection's share of {budget:g} ms of work a second"
            self._send_error("rate_limited", explanation + "; refused unread", None)
            return
        if large:
            message, parse_ms = await asyncio.to_thread(self._parse, frame)
        else:
            message, parse_ms = self._parse(frame)
        self._on_message(message, parse_ms, now)

    def _end_with(self, code: int, reason: str, metric: str) -> None:
        """End the connection for a limit: close it with `code` and `reason`, unanswered."""
        if self._end.is_set():
            return
        self._ending = (code, reason)
        self._end.set()
        self._metrics.connections_closed.labels(metric).inc()

    def _parse(self, frame: str | bytes) -> tuple[Message | ProtocolError, float]:
        """The message in a frame (or why it is refused), and the ms parsing took."""
        started = time.perf_counter()
        try:
            message: Message | ProtocolError = self._parser.parse(frame)
        except ProtocolError as error:
            message = error
        return message, (time.perf_counter() - started) * 1000.0

    def _on_message(self, message: Message | ProtocolError, parse_ms: float, now: float) -> None:
        """Make a message the pending snapshot, hold it back, or answer an error."""
        allowed = self._admits(now)
        if not allowed and self._persistence.refused(now):
            self._end_with(POLICY_VIOLATION, "rate limit exceeded", "rate_limited")
            return
        started = time.perf_counter()
        try:
            if isinstance(message, ProtocolError):
                raise message
            self._edit_drawing(message)
        except ProtocolError as error:
            self._send_error(error.code, error.message, error.seq)
            return
        finally:
            # Receiving, parsing and editing the drawing are paid for whatever comes of it.
            edit_ms = (time.perf_counter() - started) * 1000.0
            self._budget.spend(MESSAGE_MS + parse_ms + edit_ms, now)
        self._received.inc()
        if self._deferred is not None:
            self._reject_deferred()
        arrival = Arrival(message, now, self._decode_cost_ms(message))
        if allowed:
            self._offer(arrival)
        else:
            self._deferred = arrival
            self._deferred_timer = asyncio.get_running_loop().call_later(
                self._wait_s(now), self._release_deferred
            )

    def _admits(self, now: float) -> bool:
        """Whether the message and work budgets allow one more snapshot now."""
        return self._budget.allows(now) and self._bucket.take(now)

    def _wait_s(self, now: float) -> float:
        return max(self._budget.wait_s(now), self._bucket.wait_s(now))

    def _decode_cost_ms(self, message: Message) -> float:
        """The estimated work of decoding a message: its picture, or the whole drawing."""
        if isinstance(message, EncodedSnapshot):
            return picture_cost_ms(message.image, self._settings.max_pixels)
        return drawing_cost_ms(self._drawing.points)

    def _edit_drawing(self, message: Message) -> None:
        """Apply an ink edit or a strokes message to the drawing (even when rate-limited).

        The ink is kept whatever the rate: the client sends each point once, so a refused
        edit that was dropped would leave the drawing short of it for good.
        """
        if isinstance(message, StrokesSnapshot):
            self._drawing.replace(message)
        elif not isinstance(message, EncodedSnapshot):
            self._drawing.apply(message)

    def _offer(self, arrival: Arrival) -> None:
        """Make a snapshot the pending one and set when it is due."""
        if self._pending is None:
            self._first_pending_at = arrival.received_at
        else:
            self._metrics.snapshots_coalesced.inc()
        self._pending = arrival
        self._due_at = min(
            arrival.received_at + self._debounce_s, self._first_pending_at + self._max_wait_s
        )
        self._arm_due_timer()
        # Errors that waited for the snapshot this one overtook may go now.
        self._release_held_errors()

    def _reject_deferred(self) -> None:
        """A newer snapshot overtook the held-back one: tell the client it was rate-limited."""
        assert self._deferred is not None
        if self._deferred_timer is not None:
            self._deferred_timer.cancel()
            self._deferred_timer = None
        limit = self._settings.max_messages_per_s
        budget = self._settings.max_cost_ms_per_s
        seq = self._deferred.snapshot.seq
        self._deferred = None
        self._send_error(
            "rate_limited",
            f"over this connection's share: {limit} messages or {budget:g} ms of work a second",
            seq,
        )
        self._release_held_errors()

    def _release_deferred(self, force: bool = False) -> None:
        """Offer the held-back snapshot once the rate allows (or at once when draining)."""
        if self._deferred_timer is not None:
            self._deferred_timer.cancel()
            self._deferred_timer = None
        if self._deferred is None:
            return
        now = time.monotonic()
        if force or self._admits(now):
            deferred, self._deferred = self._deferred, None
            self._offer(deferred)
        else:
            self._deferred_timer = asyncio.get_running_loop().call_later(
                self._wait_s(now), self._release_deferred
            )

    async def _process(self) -> None:
        """Forever: wait until the pending snapshot is due, predict it, queue the answer."""
        while True:
            await self._until_due()
            try:
                prediction = await self._worker.answer(
                    self._take, self._include_input, self._pending_cost_ms, self._spend,
                    self._readings,
                )
            except ImageError as error:
                assert self._in_flight is not None
                self._send_error(error.code, error.message, self._in_flight.snapshot.seq)
            except DecodeError as error:
                assert self._in_flight is not None
                self._send_error("internal", str(error), self._in_flight.snapshot.seq)
            except Exception:
                # A bug, not the client's fault: logged with its traceback, and the client
                # may send the message again; the connection goes on.
                assert self._in_flight is not None
                logger.exception("failed to answer seq %d", self._in_flight.snapshot.seq)
                message = "the server failed to process this message; send it again"
                self._send_error("internal", message, self._in_flight.snapshot.seq)
            else:
                assert self._in_flight is not None
                item = Outgoing(
                    self._in_flight.snapshot.seq, self._in_flight.received_at, prediction
                )
                if self._outbox.put_prediction(item):
                    self._metrics.predictions_dropped.inc()
            finally:
                self._in_flight = None
                self._release_held_errors()
                self._answered.set()

    async def _until_due(self) -> None:
        """Return once a snapshot is pending and its debounce is over (or we are draining)."""
        while True:
            if self._pending is not None:
                if self._draining.is_set() or time.monotonic() >= self._due_at:
                    return
                # A timer may fire a hair early (the loop rounds to its clock's resolution).
                self._arm_due_timer()
            self._changed.clear()
            await self._changed.wait()

    def _arm_due_timer(self) -> None:
        """Wake the processor when the pending snapshot is due.

        A timer per snapshot, rather than waking the processor at every message to work out
        the new deadline: most messages only push the deadline back.
        """
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_timer = asyncio.get_running_loop().call_at(self._due_at, self._changed.set)

    def _pending_cost_ms(self) -> float:
        """The estimated decode cost of the pending snapshot (for the worker's lanes)."""
        return 0.0 if self._pending is None else self._pending.decode_ms

    def _spend(self, cost_ms: float) -> None:
        """Charge this connection for work its snapshot caused beyond decoding (a split)."""
        self._budget.spend(cost_ms, time.monotonic())

    def _take(self) -> Picture:
        """Hand the newest pending snapshot to the worker (called once a decoder is free)."""
        arrival = self._pending
        assert arrival is not None
        self._pending = None
        self._in_flight = arrival
        # Decoding is paid for when it happens: snapshots overtaken before it cost nothing.
        self._budget.spend(arrival.decode_ms, time.monotonic())
        snapshot = arrival.snapshot
        if isinstance(snapshot, EncodedSnapshot):
            return snapshot.image
        # A strokes message replaced the drawing, an ink edit changed it: it is the drawing.
        return self._drawing.packed()

    async def _write(self) -> None:
        """Forever: send the next outgoing message, stamping predictions with their latency."""
        while True:
            item = await self._outbox.get()
            try:
                if item.prediction is None:
                    assert item.error_text is not None
                    await self._connection.send(item.error_text)
                    continue
                assert item.seq is not None
                latency_s = time.monotonic() - item.received_at
                text = prediction_message(
                    item.seq, item.prediction.as_json(), round(latency_s * 1000.0, 3)
                )
                await self._connection.send(text)
                self._sent.inc()
                self._latency.observe(latency_s)
            finally:
                self._outbox.sent()

    async def _settle(self) -> None:
        """Wait until every accepted snapshot is answered and every answer is sent."""
        while self._pending is not None or self._in_flight is not None:
            self._answered.clear()
            await self._answered.wait()
        await self._outbox.join()

    def _send_error(self, code: ErrorCode, message: str, seq: int | None) -> None:
        """Queue an error, behind the answer of any older snapshot still waiting for one."""
        self._metrics.errors.labels(code, "ws").inc()
        item = Outgoing(seq, time.monotonic(), error_text=error_message(code, message, seq))
        if seq is not None and seq > self._oldest_unanswered_seq():
            # Bounded like the outbox: a client that keeps sending bad messages while a
            # slow snapshot decodes loses its oldest errors, not the server's memory.
            if len(self._held_errors) >= self._settings.max_queued_errors:
                self._held_errors.popleft()
            self._held_errors.append(item)
        else:
            self._outbox.put_error(item)

    def _oldest_unanswered_seq(self) -> float:
        """The seq of the oldest snapshot still to be answered (infinity when none)."""
        waiting = (self._in_flight, self._pending, self._deferred)
        return min((arrival.snapshot.seq for arrival in waiting if arrival), default=math.inf)

    def _release_held_errors(self) -> None:
        """Queue the held errors that no older snapshot's answer must precede any more."""
        if not self._held_errors:
            return
        oldest = self._oldest_unanswered_seq()
        while self._held_errors:
            seq = self._held_errors[0].seq
            if seq is not None and seq > oldest:
                return
            self._outbox.put_error(self._held_errors.popleft())
