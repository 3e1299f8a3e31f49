"""A Python client for the digits server: an async WebSocket client, an HTTP helper, a CLI.

    async with DigitsClient.connect("ws://127.0.0.1:8000/ws") as client:
        prediction = await client.predict("seven.png")

`python -m client --help` describes the command line. The client talks to the server only
over the network (protocol v1 and the v2 additions, see the README), never by importing it.
"""

from __future__ import annotations

from client.errors import (
    ConnectionClosed,
    ConnectionFailed,
    DigitsError,
    ProtocolError,
    ProtocolTimeout,
    ServerError,
)
from client.http import http_url_for, predict_http
from client.images import ImageSource
from client.messages import Hello, ModelInfo, Number, NumberDigit, Prediction, Strokes
from client.session import DEFAULT_TIMEOUT_S, DEFAULT_URL, DigitsClient

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "ConnectionClosed",
    "ConnectionFailed",
    "DigitsClient",
    "DigitsError",
    "Hello",
    "ImageSource",
    "ModelInfo",
    "Number",
    "NumberDigit",
    "Prediction",
    "ProtocolError",
    "ProtocolTimeout",
    "ServerError",
    "Strokes",
    "http_url_for",
    "predict_http",
]
