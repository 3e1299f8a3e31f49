"""`POST /api/corrections`: read a correction out of a request body, or refuse it.

The body is JSON: `label` ("0"-"9", a number of up to 32 digits, or "not_digit"), and the
drawing as `ink` (validated like a `strokes` message, under the same limits) or as `image`
(a data URL or base64, decoded under the same limits as a prediction's picture), plus the
optional `answer` the person saw and the `model_version` that gave it. An optional
`Idempotency-Key` header names the correction, so that a retry is stored once. Refusals are
`UploadError`s and `ImageError`s carrying PROTOCOL.md's statuses and codes.

A picture is decoded and stored as a fresh PNG: whatever else the upload carried (EXIF
with a place and a camera, comments, colour profiles) is not stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import re
from typing import Any

import orjson
from quart import Request

from corrections.schema import (
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_LABEL_CHARS,
    MAX_MODEL_VERSION_CHARS,
)
from corrections.store import Correction
from server.config import Settings
from server.images import ImageError, decode_text, open_image
from server.protocol import Limits, ProtocolError, parse_strokes
from server.uploads import UploadError

NOT_DIGIT = "not_digit"
LABEL = re.compile(rf"[0-9]{{1,{MAX_LABEL_CHARS}}}|{NOT_DIGIT}")
# The prediction object the person saw, as JSON: a few hundred bytes; far more is not one.
MAX_ANSWER_BYTES = 4096
IDEMPOTENCY_KEY = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}")


def idempotency_key(request: Request) -> str | None:
    """The request's `Idempotency-Key` header: 1 to 64 letters, digits, `-` and `_`."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise UploadError(
            400,
            "bad_request",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} letters, digits, - or _",
        )
    return key


async def read_correction(request: Request, settings: Settings) -> Correction:
    """The correction in a request's JSON body."""
    body = await request.get_data(False, False, False)
    if request.mimetype != "application/json":
        raise UploadError(415, "unsupported_media_type", "send application/json")
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UploadError(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise UploadError(400, "bad_request", "the body must be a JSON object")
    label = _label(fields.get("label"))
    answer = _answer(fields.get("answer"))
    model_version = _model_version(fields.get("model_version"))
    ink, image = fields.get("ink"), fields.get("image")
    if (ink is None) == (image is None):
        raise UploadError(400, "bad_request", "send the drawing as exactly one of 'ink', 'image'")
    if ink is not None:
        return Correction(label, ink=_ink(ink, settings), answer=answer,
                          model_version=model_version)
    if not isinstance(image, str):
        raise UploadError(400, "bad_request", "'image' must be a data URL or base64 text")
    png = await asyncio.to_thread(_clean_png, image, settings)
    return Correction(label, image=png, answer=answer, model_version=model_version)


def _label(label: Any) -> str:
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise UploadError(
            400,
            "bad_request",
            f"'label' must be one to {MAX_LABEL_CHARS} digits, or {NOT_DIGIT!r}",
        )
    return label


def _answer(answer: Any) -> dict[str, Any] | None:
    if answer is None:
        return None
    if not isinstance(answer, dict):
        raise UploadError(400, "bad_request", "'answer' must be the prediction object")
    if len(orjson.dumps(answer)) > MAX_ANSWER_BYTES:
        raise UploadError(413, "too_large", f"'answer' is over {MAX_ANSWER_BYTES} bytes")
    return answer


def _model_version(version: Any) -> str | None:
    if version is None:
        return None
    if not isinstance(version, str) or not 0 < len(version) <= MAX_MODEL_VERSION_CHARS:
        raise UploadError(
            400,
            "bad_request",
            f"'model_version' must be a string of 1 to {MAX_MODEL_VERSION_CHARS} characters",
        )
    return version


def _ink(ink: Any, settings: Settings) -> dict[str, Any]:
    """The ink, validated as a strokes message is, with its points as float pairs."""
    if not isinstance(ink, dict):
        raise UploadError(400, "bad_request", "'ink' must be an object")
    message = {key: ink.get(key) for key in ("width", "height", "line_width", "strokes")}
    limits = Limits(settings.max_message_bytes, settings.max_pixels, settings.max_stroke_points)
    try:
        strokes = parse_strokes(message, 0, limits)
    except ProtocolError as error:
        status = 413 if error.code == "too_large" else 400
        code = "too_large" if error.code == "too_large" else "bad_request"
        raise UploadError(status, code, f"ink: {error}") from None
    if not any(strokes.strokes):
        raise UploadError(400, "bad_request", "the ink has no points: nothing to correct")
    return {
        "width": strokes.width,
        "height": strokes.height,
        "line_width": strokes.line_width,
        "strokes": [[list(point) for point in stroke] for stroke in strokes.strokes],
    }


def _clean_png(text: str, settings: Settings) -> bytes:
    """The picture of a data URL or base64, decoded and encoded afresh as a bare PNG."""
    image = open_image(decode_text(text, settings.max_message_bytes), settings.max_pixels)
    if image.mode not in ("1", "L", "LA", "RGB", "RGBA"):
        try:
            image = image.convert("RGBA")
        except (ValueError, OSError):
            raise ImageError("bad_image", f"pictures of mode {image.mode} are not kept") from None
    output = io.BytesIO()
    # No `pnginfo`, no `exif`, no `icc_profile`: only the pixels go into the new file.
    image.save(output, format="PNG")
    return output.getvalue()


def authorized(request: Request, admin_token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <admin_token>`, checked in constant time.

    Both sides are hashed first, so the comparison takes as long whatever the length or the
    first differing character of what was sent.
    """
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    expected = hashlib.sha256(admin_token.encode()).digest()
    offered = hashlib.sha256(given.strip().encode()).digest()
    return hmac.compare_digest(expected, offered) and bool(admin_token)
