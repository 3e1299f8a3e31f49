"""The HTTP routes: `predict_http` posts one picture to `POST /api/predict`, and
`correct_http` one correction to `POST /api/corrections`."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from client.errors import ConnectionFailed, ProtocolError, ProtocolTimeout
from client.images import ImageSource, image_bytes, media_type
from client.messages import Prediction, parse_http_error, parse_json_object, parse_prediction
from client.session import DEFAULT_TIMEOUT_S

PREDICT_PATH = "/api/predict"
CORRECTIONS_PATH = "/api/corrections"


def http_url_for(url: str) -> str:
    """The server's HTTP base URL: `ws://host:port/ws` gives `http://host:port`.

    An `http(s)://` URL keeps its scheme; a trailing `/ws` or `/api/predict` is dropped.
    """
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    for suffix in ("/ws", PREDICT_PATH):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def predict_http(
    url: str, image: ImageSource, timeout: float = DEFAULT_TIMEOUT_S,
    *, include_input: bool = False,
) -> Prediction:
    """Post one picture (a path, bytes or a Pillow image) and return the server's answer.

    `url` is the server's base URL (`http://host:port`), its WebSocket URL, or the
    endpoint itself. The picture goes as the multipart field `image`; `include_input`
    asks for the 28x28 PNG the model saw (`Prediction.input_png`).
    """
    endpoint = http_url_for(url) + PREDICT_PATH
    body = image_bytes(image)
    name = Path(image).name if isinstance(image, str | os.PathLike) else "image"
    params = {"include_input": "1"} if include_input else {}
    response = _post(
        url,
        endpoint,
        timeout,
        files={"image": (name, body, media_type(body))},
        params=params,
    )
    if response.status_code != 200:
        raise parse_http_error(response.status_code, response.text)
    return parse_prediction(parse_json_object(response.content))


def correct_http(
    url: str,
    label: str,
    *,
    ink: dict[str, Any] | None = None,
    image: ImageSource | None = None,
    model_version: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> str:
    """Tell the server the right reading of a drawing (its `ink`, or a picture); returns the id.

    `label` is one or more digits, or "not_digit"; `ink` is `{"width", "height",
    "line_width", "strokes"}` with `[x, y]` points.
    """
    if (ink is None) == (image is None):
        raise ValueError("give exactly one of ink and image")
    body: dict[str, Any] = {"label": label}
    if ink is not None:
        body["ink"] = ink
    else:
        assert image is not None
        encoded = image_bytes(image)
        body["image"] = f"data:{media_type(encoded)};base64,{base64.b64encode(encoded).decode()}"
    if model_version is not None:
        body["model_version"] = model_version
    endpoint = http_url_for(url) + CORRECTIONS_PATH
    response = _post(url, endpoint, timeout, json=body)
    if response.status_code != 201:
        raise parse_http_error(response.status_code, response.text)
    answer = parse_json_object(response.content)
    if not isinstance(answer.get("id"), str):
        raise ProtocolError(f"{endpoint} answered 201 without an id: {response.text[:200]}")
    return str(answer["id"])


def _post(url: str, endpoint: str, timeout: float, **request: Any) -> httpx.Response:
    """POST to the endpoint, turning httpx's failures into this client's errors."""
    try:
        return httpx.post(endpoint, timeout=timeout, **request)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise ConnectionFailed(url, "not an http(s):// or ws(s):// URL") from None
    except httpx.ConnectTimeout:
        raise ConnectionFailed(endpoint, f"no answer within {timeout:g} s") from None
    except httpx.TimeoutException:
        raise ProtocolTimeout(f"no answer from {endpoint} within {timeout:g} s") from None
    except httpx.ConnectError as error:
        raise ConnectionFailed(endpoint, _describe_connect_error(error)) from None
    except httpx.TransportError as error:
        raise ConnectionFailed(endpoint, str(error) or type(error).__name__) from None


def _describe_connect_error(error: httpx.ConnectError) -> str:
    """"connection refused" rather than httpx's "[Errno 111] Connection refused"."""
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(error))
    if "refused" in text.lower():
        return "connection refused (is the server running?)"
    return text.lower() or "cannot connect"
