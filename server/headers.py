"""Security headers on every HTTP answer, as ASGI middleware around the Quart app.

- `Content-Security-Policy`: scripts, styles, fonts and connections from our own origin only,
  no inline script or style attribute, pictures also from `data:` and `blob:` URLs (what a
  canvas exports), no framing. `connect-src 'self'` also covers the page's WebSocket: CSP
  level 3 matches ws:/wss: on the page's own host and port to 'self' (Chromium since 71,
  Firefox, Safari since 16; on an older Safari the socket is blocked and the page falls back
  to `POST /api/predict`).
- `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

Middleware rather than an `after_request` hook, so that error pages and the refusal of a
WebSocket upgrade carry the headers too. Hypercorn adds no `Server` header
(`include_server_header` is off), so no answer names the server or its version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)
_STARTS = frozenset({"http.response.start", "websocket.http.response.start"})


class SecurityHeaders:
    """Wraps an ASGI app so that each HTTP answer it starts carries `SECURITY_HEADERS`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        async def send_secured(message: ASGISendEvent) -> None:
            if message["type"] in _STARTS:
                start: dict[str, Any] = dict(message)
                headers = [
                    (name, value)
                    for name, value in start.get("headers", ())
                    if name.lower() not in _NAMES
                ]
                start["headers"] = [*headers, *SECURITY_HEADERS]
                message = cast(ASGISendEvent, start)
            await send(message)

        await self.app(scope, receive, send_secured)
