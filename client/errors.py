"""Every exception the client raises, all under `DigitsError`.

- `ConnectionFailed`: the server could not be reached, refused the connection, or the
  connection broke; `ConnectionClosed` is the case where the server closed it with a code.
- `ServerError`: the server answered a typed error (`{"type": "error", ...}` on the socket,
  `{"error": {...}}` over HTTP).
- `ProtocolTimeout`: no answer within the time allowed.
- `ProtocolError`: the server said something that the protocol (v1 or v2) does not allow.
- `RecordingError`: a stroke recording file that cannot be replayed.
"""

from __future__ import annotations


class DigitsError(Exception):
    """Base class of every error this client raises."""


# The names say what happened; an "Error" suffix would add nothing (pep8-naming N818).
class ConnectionFailed(DigitsError):  # noqa: N818
    """The server is unreachable, refused the connection, or the connection broke."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot talk to {url}: {reason}")
        self.url = url
        self.reason = reason


class ConnectionClosed(ConnectionFailed):
    """The server closed the WebSocket (1001 at shutdown, 1013 when it is full, ...)."""

    def __init__(self, url: str, code: int | None, reason: str) -> None:
        detail = f"connection closed (code {code}" + (f": {reason})" if reason else ")")
        super().__init__(url, detail)
        self.code = code
        self.close_reason = reason


class ServerError(DigitsError):
    """The server answered with a typed error instead of a prediction."""

    def __init__(
        self, code: str, message: str, seq: int | None = None, status: int | None = None
    ) -> None:
        where = f" (seq {seq})" if seq is not None else ""
        super().__init__(f"{code}: {message}{where}")
        self.code = code
        self.message = message
        self.seq = seq
        self.status = status


class ProtocolTimeout(DigitsError, TimeoutError):  # noqa: N818
    """No answer from the server within the time allowed."""


class ProtocolError(DigitsError):
    """The server sent something that the protocol does not allow."""


class RecordingError(DigitsError, ValueError):
    """A stroke recording that is not `{"width", "height", "line_width", "strokes"}`."""
