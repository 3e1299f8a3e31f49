"""`DigitsClient`: one WebSocket connection to a digits server (protocol v1, and v2's ink).

Owns the connection's life (open, read the `hello`, close), the client's sequence numbers,
sending pictures, strokes and ink (v2: points appended to a stroke, undo, clear), and
reading answers: one at a time (`receive`), as a stream
(`predictions`), or the answer to a given picture (`predict`, `wait_for`).

Sequence numbers start at 0 and go up by one per message, text or binary, which is exactly
the seq the server assigns to a binary frame, so both kinds can be mixed freely. One
exception mirrors the server: a text frame over the hello's `max_bytes` is refused unread
(its error has `seq: null`) and does not move the sequence on, so it does not move ours.

`wait_for` matches answers to messages by seq, not by order: an error about a later message
that arrives first (servers before protocol v2 could send one ahead of an older prediction)
is kept, and handed to whoever reads or waits for it next.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import websockets.exceptions
from PIL import Image
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websocket_connect

from client.errors import (
    ConnectionClosed,
    ConnectionFailed,
    ProtocolError,
    ProtocolTimeout,
    ServerError,
)
from client.images import ImageSource, image_bytes, png_bytes
from client.messages import (
    Hello,
    Prediction,
    Strokes,
    clear_message,
    ink_message,
    parse_hello,
    parse_json_object,
    parse_server_message,
    snapshot_message,
    strokes_message,
    undo_message,
)

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
DEFAULT_TIMEOUT_S = 10.0
# Close codes after which a stream of predictions simply ends: a normal close, and the
# server going away (its graceful shutdown).
_NORMAL_CLOSE_CODES = frozenset({1000, 1001})
# Why a server refuses a WebSocket upgrade, by HTTP status.
_REFUSALS = {
    403: "the server refused this origin",
    404: "no WebSocket at this path",
    503: "the server is full or not ready, try again later",
}


class DigitsClient:
    """A connection to `/ws`: send pictures or strokes, read predictions.

    Open it with `async with DigitsClient.connect(url) as client:`. One task at a time may
    read answers (`receive`, `predictions`, `predict`, `wait_for`).
    """

    def __init__(
        self, connection: ClientConnection, hello: Hello, url: str, timeout: float
    ) -> None:
        self._connection = connection
        self._hello = hello
        self._url = url
        self._timeout = timeout
        self._last_seq = -1
        # Errors about later messages, read by `wait_for` while it waited for an earlier
        # one, in the order they arrived.
        self._kept_errors: deque[ServerError] = deque()

    @classmethod
    async def open(
        cls, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT_S,
        origin: str | None = None,
    ) -> DigitsClient:
        """Connect and read the hello; `timeout` bounds each, and every later wait.

        `url` is the WebSocket URL (`ws://host:port/ws`) or the server's own address
        (`http://host:port`, as `make serve` prints it), which leads to its `/ws`.
        """
        url = websocket_url_for(url)
        connection = await _open_socket(url, timeout, origin)
        try:
            hello = await _read_hello(connection, url, timeout)
        except BaseException:
            await connection.close()
            raise
        return cls(connection, hello, url, timeout)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT_S,
        origin: str | None = None,
    ) -> AsyncIterator[DigitsClient]:
        """`async with DigitsClient.connect(url) as client:` opens, then closes, a client."""
        client = await cls.open(url, timeout=timeout, origin=origin)
        try:
            yield client
        finally:
            await client.close()

    async def __aenter__(self) -> DigitsClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def hello(self) -> Hello:
        """The server's hello: its model and its limits."""
        return self._hello

    @property
    def url(self) -> str:
        """The WebSocket URL this client is connected to."""
        return self._url

    @property
    def last_seq(self) -> int:
        """The seq of the last message sent (-1 before the first)."""
        return self._last_seq

    async def close(self) -> None:
        """Close the connection normally (code 1000); closing twice is harmless."""
        await self._connection.close()

    async def send_bytes(self, image: bytes, *, binary: bool = True) -> int:
        """Send encoded image bytes; returns the seq they carry.

        A binary frame by default (no base64, so the whole `max_bytes` is for the picture);
        `binary=False` sends a `snapshot` text message instead.
        """
        seq = self._last_seq + 1
        await self._send(bytes(image) if binary else snapshot_message(seq, image), seq)
        return seq

    async def send_file(self, path: str | os.PathLike[str], *, binary: bool = True) -> int:
        """Send an image file's bytes; returns the seq used."""
        return await self.send_bytes(Path(path).read_bytes(), binary=binary)

    async def send_image(self, image: Image.Image, *, binary: bool = True) -> int:
        """Send a Pillow image (encoded as PNG); returns the seq used."""
        return await self.send_bytes(png_bytes(image), binary=binary)

    async def send_strokes(
        self, strokes: Strokes, width: int, height: int, line_width: float
    ) -> int:
        """Send a drawing as strokes of (x, y) points on a width x height canvas."""
        seq = self._last_seq + 1
        await self._send(strokes_message(seq, strokes, width, height, line_width), seq)
        return seq

    async def send_ink(
        self, stroke: int, points: Sequence[Sequence[float]], width: int, height: int,
        line_width: float,
    ) -> int:
        """Append points to stroke number `stroke` of the connection's ink (v2); returns the seq.

        `stroke` equal to the number of strokes so far starts a new one; equal to the last
        one's index continues it.
        """
        seq = self._last_seq + 1
        await self._send(ink_message(seq, stroke, points, width, height, line_width), seq)
        return seq

    async def send_undo(self) -> int:
        """Remove the last stroke of the connection's ink (v2); returns the seq."""
        seq = self._last_seq + 1
        await self._send(undo_message(seq), seq)
        return seq

    async def send_clear(self) -> int:
        """Remove all the connection's ink (v2); returns the seq."""
        seq = self._last_seq + 1
        await self._send(clear_message(seq), seq)
        return seq

    async def receive(self, timeout: float | None = None) -> Prediction:
        """The next prediction; raises `ServerError` when the next answer is an error.

        `timeout` defaults to the client's; the connection stays usable after an error.
        """
        limit = self._timeout if timeout is None else timeout
        answer = await self.next_answer(limit)
        if isinstance(answer, ServerError):
            raise answer
        return answer

    def predictions(self, idle_timeout: float | None = None) -> AsyncIterator[Prediction]:
        """Iterate over predictions as they arrive, until the server closes normally.

        An error answer raises `ServerError` (iterate again to go on); with `idle_timeout`, a
        silence that long raises `ProtocolTimeout`.
        """
        return _Predictions(self, idle_timeout)

    async def wait_for(self, seq: int, timeout: float | None = None) -> Prediction:
        """The answer to the message with this seq, matched by seq whatever the order.

        The server may skip a picture overtaken by a newer one, so any prediction with a seq
        at least this one answers it. An error for this seq (or one with no seq) raises
        `ServerError`. An error about a later message is kept for its own `wait_for` (or the
        next `receive`); errors and predictions about older messages are skipped. A picture
        overtaken by a newer one that then fails is never answered: wait for the newest.
        """
        kept, self._kept_errors = self._kept_errors, deque()
        while kept:
            try:
                prediction = self._match(kept.popleft(), seq)
            except ServerError:
                self._kept_errors.extend(kept)
                raise
            if prediction is not None:
                self._kept_errors.extend(kept)
                return prediction
        limit = self._timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    prediction = self._match(await self._read_answer(None), seq)
                    if prediction is not None:
                        return prediction
        except TimeoutError:
            raise ProtocolTimeout(f"no answer to seq {seq} within {limit:g} s") from None

    def _match(self, answer: Prediction | ServerError, seq: int) -> Prediction | None:
        """The prediction that answers `seq`, or None; raise its error, keep later errors."""
        if isinstance(answer, ServerError):
            if answer.seq is None or answer.seq == seq:
                raise answer
            if answer.seq > seq:
                self._kept_errors.append(answer)
            return None
        if answer.seq is not None and answer.seq >= seq:
            return answer
        return None

    async def predict(
        self, source: ImageSource, *, timeout: float | None = None
    ) -> Prediction:
        """Send a picture (a path, bytes or a Pillow image) and wait for its answer."""
        return await self.wait_for(await self.send_bytes(image_bytes(source)), timeout)

    async def predict_strokes(
        self, strokes: Strokes, width: int, height: int, line_width: float,
        *, timeout: float | None = None,
    ) -> Prediction:
        """Send a drawing as strokes and wait for its answer."""
        seq = await self.send_strokes(strokes, width, height, line_width)
        return await self.wait_for(seq, timeout)

    async def next_answer(self, timeout: float | None) -> Prediction | ServerError:
        """The next answer, a prediction or an error (`None`: no time limit).

        Errors that `wait_for` kept for later messages come first, in the order they came.
        """
        if self._kept_errors:
            return self._kept_errors.popleft()
        return await self._read_answer(timeout)

    async def _read_answer(self, timeout: float | None) -> Prediction | ServerError:
        """The next answer from the socket."""
        try:
            async with asyncio.timeout(timeout):
                message = await self._connection.recv()
        except TimeoutError:
            raise ProtocolTimeout(f"no message from the server within {timeout:g} s") from None
        except websockets.exceptions.ConnectionClosed as error:
            raise _closed(self._url, error) from None
        if not isinstance(message, str):
            raise ProtocolError("the server sent a binary frame")
        return parse_server_message(parse_json_object(message))

    async def _send(self, message: str | bytes, seq: int) -> None:
        """Send one frame carrying `seq` and move the sequence on as the server does."""
        try:
            await self._connection.send(message)
        except websockets.exceptions.ConnectionClosed as error:
            raise _closed(self._url, error) from None
        unread = isinstance(message, str) and len(message.encode()) > self._hello.max_bytes
        if not unread:
            self._last_seq = seq


class _Predictions:
    """The async iterator behind `DigitsClient.predictions()`.

    A class rather than an async generator, so breaking out of the loop leaves nothing to
    finalise later.
    """

    def __init__(self, client: DigitsClient, idle_timeout: float | None) -> None:
        self._client = client
        self._idle_timeout = idle_timeout

    def __aiter__(self) -> _Predictions:
        return self

    async def __anext__(self) -> Prediction:
        try:
            answer = await self._client.next_answer(self._idle_timeout)
        except ConnectionClosed as closed:
            if closed.code in _NORMAL_CLOSE_CODES:
                raise StopAsyncIteration from None
            raise
        if isinstance(answer, ServerError):
            raise answer
        return answer


def websocket_url_for(url: str) -> str:
    """The WebSocket URL of a server address: `http://host:port` gives `ws://host:port/ws`.

    A `ws(s)://` URL is kept as it is; an `http(s)://` one gets the matching scheme and, unless
    it already ends in `/ws`, the `/ws` path (a trailing `/api/predict` is dropped).
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None:
        return url
    path = parts.path.rstrip("/").removesuffix("/api/predict")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


async def _open_socket(url: str, timeout: float, origin: str | None) -> ClientConnection:
    """Open the WebSocket, turning every way it can fail into `ConnectionFailed`."""
    try:
        return await websocket_connect(
            url, open_timeout=timeout, close_timeout=timeout,
            origin=None if origin is None else websockets.Origin(origin),
        )
    except websockets.exceptions.InvalidURI:
        raise ConnectionFailed(url, "not a ws:// or wss:// URL") from None
    except websockets.exceptions.InvalidStatus as error:
        status = error.response.status_code
        why = _REFUSALS.get(status, "the server refused the WebSocket")
        raise ConnectionFailed(url, f"{why} (HTTP {status})") from None
    except websockets.exceptions.InvalidHandshake as error:
        raise ConnectionFailed(url, f"WebSocket handshake failed ({error})") from None
    except TimeoutError:
        raise ConnectionFailed(url, f"no answer within {timeout:g} s") from None
    except OSError as error:
        raise ConnectionFailed(url, describe_os_error(error)) from None


async def _read_hello(connection: ClientConnection, url: str, timeout: float) -> Hello:
    """The server's first message, which must be the hello."""
    try:
        async with asyncio.timeout(timeout):
            first = await connection.recv()
    except TimeoutError:
        raise ProtocolTimeout(f"no hello from {url} within {timeout:g} s") from None
    except websockets.exceptions.ConnectionClosed as error:
        raise _closed(url, error) from None
    if not isinstance(first, str):
        raise ProtocolError("the server's first message is binary, not a hello")
    return parse_hello(parse_json_object(first))


def describe_os_error(error: OSError) -> str:
    """A short reason for a socket error: "connection refused" rather than a tuple."""
    if isinstance(error, ConnectionRefusedError) or error.errno == errno.ECONNREFUSED:
        return "connection refused (is the server running?)"
    if error.strerror:
        return error.strerror.lower()
    # asyncio joins the errors of every address it tried ("Multiple exceptions: ...").
    if "Connect call failed" in str(error):
        return "connection refused (is the server running?)"
    return str(error) or type(error).__name__


def _closed(url: str, error: websockets.exceptions.ConnectionClosed) -> ConnectionClosed:
    """Our exception for a closed socket, with the server's code when it sent one."""
    if error.rcvd is not None:
        return ConnectionClosed(url, error.rcvd.code, error.rcvd.reason)
    return ConnectionClosed(url, None, "the connection dropped without a close frame")
