"""Read the picture out of a `POST /api/predict` body, whatever its form.

- `multipart/form-data` with a file field `image` (held in memory: nothing touches disk);
- raw image bytes with `Content-Type: image/png|jpeg|webp|gif|bmp`;
- `application/json` `{"image": "<data URL or bare base64>"}` (decoded later, off the loop).

Refusals are `UploadError`s that carry the HTTP status and error code of PROTOCOL.md.
"""

from __future__ import annotations

import io
import json
from typing import Any

from quart import Request
from quart.formparser import FormDataParser

from server.config import Settings
from server.images import MEDIA_TYPES

# Room for multipart boundaries and headers, or a JSON wrapper, around the picture itself.
ENVELOPE_BYTES = 64 * 1024


class UploadError(Exception):
    """An upload the server refuses, with its HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _in_memory(
    total_content_length: int | None,
    content_type: str | None,
    filename: str | None,
    content_length: int | None = None,
) -> io.BytesIO:
    # Werkzeug's default spools files over 500 kB to a temporary file; the body is already
    # bounded by MAX_CONTENT_LENGTH, so memory is the better place for it.
    return io.BytesIO()


class InMemoryFormDataParser(FormDataParser):
    """Quart's form parser, keeping uploaded files in memory."""

    def __init__(self, **options: Any) -> None:
        super().__init__(stream_factory=_in_memory, **options)


class UploadRequest(Request):
    """Quart's request, with uploads kept in memory."""

    form_data_parser_class = InMemoryFormDataParser


def body_limit_bytes(settings: Settings) -> int:
    """The largest request body read at all: a picture of the byte limit, base64-encoded."""
    return (settings.max_message_bytes + 2) // 3 * 4 + ENVELOPE_BYTES


async def read_picture(request: Request, settings: Settings) -> bytes | str:
    """The picture in a request: bytes, or the data URL / base64 text of a JSON body."""
    # Positional, for the typed overload: no cache, bytes, no form parsing.
    mimetype = request.mimetype
    if mimetype in MEDIA_TYPES:
        return _within_limit(await request.get_data(False, False, False), settings)
    if mimetype == "multipart/form-data":
        upload = (await request.files).get("image")
        if upload is None:
            raise UploadError(400, "bad_request", "multipart body has no file field 'image'")
        return _within_limit(upload.read(), settings)
    if mimetype == "application/json":
        try:
            body = json.loads(await request.get_data(False, False, False))
        except ValueError:
            raise UploadError(400, "bad_request", "the body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("image"), str):
            raise UploadError(400, "bad_request", "JSON body must be {\"image\": \"<base64>\"}")
        image: str = body["image"]
        return image
    # Read the unwanted body anyway (it is within the body limit): a response sent before
    # the body is read makes the server drop the keep-alive connection, and a client that
    # reuses it at that moment fails with "server disconnected".
    await request.get_data(False, False, False)
    raise UploadError(
        415,
        "unsupported_media_type",
        "send multipart/form-data, image/png|jpeg|webp|gif|bmp or application/json",
    )


def _within_limit(data: bytes, settings: Settings) -> bytes:
    if len(data) > settings.max_message_bytes:
        raise UploadError(
            413, "too_large", f"picture is over the limit of {settings.max_message_bytes} bytes"
        )
    return data
