"""The Quart app: routes, start-up and shutdown; the work happens in the modules below.

HTTP: `/` and the page's files, `/healthz`, `/readyz`, `/metrics`, `/api/model`,
`POST /api/predict`, `POST /api/corrections`, and with an admin token
`GET /api/corrections/export` and `DELETE /api/corrections/<id>`. WebSocket: `/ws`. Every
HTTP answer carries the security headers of `server/headers.py`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from hypercorn.middleware import ProxyFixMiddleware
from quart import (
    Quart,
    Response,
    has_request_context,
    jsonify,
    request,
    send_from_directory,
    websocket,
)
from quart.globals import websocket_ctx
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from corrections.store import CorrectionStore, StoreError, migrate
from model.inference import read_model_info
from server.batching import DecodeError, InferenceWorker
from server.config import Settings
from server.corrections import authorized, idempotency_key, read_correction
from server.costs import picture_cost_ms
from server.headers import SecurityHeaders
from server.images import ImageError
from server.metrics import CONTENT_TYPE, Metrics
from server.origins import OriginPolicy
from server.protocol import hello_message
from server.ratelimit import AddressLimits
from server.streaming import GOING_AWAY, Session
from server.uploads import UploadError, UploadRequest, body_limit_bytes, read_picture

logger = logging.getLogger(__name__)

# The page and its modules are not fingerprinted, so browsers must revalidate them (cheap:
# ETag and Last-Modified come with every file); images and fonts may be cached a while.
REVALIDATE_SUFFIXES = (".html", ".js", ".mjs", ".css", ".json", ".webmanifest")
REVALIDATE = "no-cache"
CACHE_A_DAY = "public, max-age=86400"
TRY_AGAIN_LATER = 1013
# Seconds an overloaded server asks an uploader to wait before trying again.
RETRY_AFTER_S = 1


class Runtime:
    """What one app holds while it serves: the worker, the open sessions, readiness."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.worker = InferenceWorker(settings, self.metrics)
        self.model_info = read_model_info(settings.model_path).as_json()
        self.sessions: set[Session] = set()
        self.store: CorrectionStore | None = None
        self.correction_limits = AddressLimits(settings.max_corrections_per_minute)
        # Uploads admitted and not yet answered (bounded by `max_waiting_uploads`).
        self.waiting_uploads = 0
        self.ready = False
        self.draining = False
        # Set when the model cannot be loaded: `python -m server` then exits non-zero.
        self.failed = asyncio.Event()
        self._loading: asyncio.Task[None] | None = None

    def start_loading(self) -> None:
        """Load the model in the background, so that `/healthz` and `/readyz` answer meanwhile."""
        self._loading = asyncio.create_task(self.load())

    async def load(self) -> None:
        """Load and warm up the model; on failure, log why and set `failed`."""
        started = time.perf_counter()
        try:
            # Every worker migrates; the store's lock lets one of them do it at a time.
            await asyncio.to_thread(migrate, self.settings.database_url)
            self.store = CorrectionStore.open(self.settings.database_url)
        except Exception as error:
            logger.error("cannot open the corrections store: %s", error)
            self.failed.set()
            return
        try:
            await self.worker.start()
        except Exception as error:
            logger.error("cannot load model %s: %s", self.settings.model_path, error)
            self.failed.set()
            return
        # TensorFlow and Keras leave ~330,000 Python objects behind, and every full garbage
        # collection walked them all: 140 ms with the event loop stopped, whenever a burst of
        # allocations (a large strokes message) set one off. Frozen, they are never walked.
        gc.freeze()
        self.ready = True
        logger.info("ready in %.1f s", time.perf_counter() - started)

    @contextmanager
    def admitted_upload(self) -> Iterator[None]:
        """Count an HTTP upload (a picture or a correction) as waiting while it is handled."""
        self.waiting_uploads += 1
        self.metrics.waiting_uploads.set(self.waiting_uploads)
        try:
            yield
        finally:
            self.waiting_uploads -= 1
            self.metrics.waiting_uploads.set(self.waiting_uploads)

    async def drain(self) -> None:
        """Graceful shutdown: refuse new work, answer pending snapshots, close sockets (1001)."""
        self.draining = True
        sessions = list(self.sessions)
        for session in sessions:
            session.drain()
        if sessions:
            waiting = asyncio.gather(*(session.wait_closed() for session in sessions))
            try:
                await asyncio.wait_for(waiting, self.settings.shutdown_grace_s)
            except TimeoutError:
                logger.warning("%d connections did not close in time", len(self.sessions))

    async def stop(self) -> None:
        """Release the worker's threads."""
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
        await self.worker.stop()
        if self.store is not None:
            await self.store.close()


def runtime_of(app: Quart) -> Runtime:
    """The `Runtime` of an app made by `create_app`."""
    runtime = app.extensions["digits"]
    assert isinstance(runtime, Runtime)
    return runtime


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    """An HTTP error in the protocol's shape."""
    return jsonify({"error": {"code": code, "message": message}}), status


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def create_app(settings: Settings | None = None) -> Quart:
    """Build the app; the model loads when serving starts."""
    settings = settings or Settings()
    app = Quart(__name__, static_folder=None)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = body_limit_bytes(settings)
    # Quart's documented way to add ASGI middleware while `app` stays the Quart app.
    if settings.proxy_hops:
        # The client's address (for per-client limits) from the proxies' X-Forwarded-For.
        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            app.asgi_app, mode="legacy", trusted_hops=settings.proxy_hops
        )
    app.asgi_app = SecurityHeaders(app.asgi_app)  # type: ignore[method-assign]
    runtime = Runtime(settings)
    app.extensions["digits"] = runtime
    metrics = runtime.metrics
    origins = OriginPolicy(settings.origins)
    for name in ("max_waiting_uploads", "max_connections", "max_cost_ms_per_s",
                 "max_corrections_per_minute",
                 "max_messages_per_s", "max_message_bytes", "max_pixels", "max_stroke_points"):
        metrics.limits.labels(name).set(getattr(settings, name))

    @app.before_serving
    async def start() -> None:
        if settings.workers > 1:
            # A worker starts listening only once its model is ready: the kernel then
            # sends each connection to a worker that can answer it, never to one still
            # loading, while a single server answers `/healthz` (and `/readyz`: 503) at once.
            await runtime.load()
        else:
            runtime.start_loading()

    @app.after_serving
    async def stop() -> None:
        await runtime.stop()

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        if runtime.ready and not runtime.draining:
            return {"status": "ready"}
        return {"status": "draining" if runtime.draining else "loading"}, 503

    @app.get("/metrics")
    async def metrics_text() -> Response:
        return Response(metrics.exposition(), content_type=CONTENT_TYPE)

    @app.get("/api/model")
    async def model_info() -> Any:
        return runtime.model_info

    @app.post("/api/predict")
    async def predict() -> Any:
        if not runtime.ready:
            return error_response(503, "not_ready", "the model is still loading")
        if runtime.waiting_uploads >= settings.max_waiting_uploads:
            return _overloaded()
        received_at = time.monotonic()
        with runtime.admitted_upload():
            picture = await read_picture(request, settings)
            metrics.snapshots_received.labels("http").inc()
            include_input = _flag(request.args.get("include_input"))
            cost_ms = picture_cost_ms(picture, settings.max_pixels)
            prediction = await runtime.worker.answer(
                lambda: picture, include_input, lambda: cost_ms
            )
        metrics.predictions_sent.labels("http").inc()
        metrics.prediction_latency_seconds.labels("http").observe(time.monotonic() - received_at)
        return prediction.as_json()

    @app.post("/api/corrections")
    async def add_correction() -> Any:
        store = runtime.store
        if store is None:
            return error_response(503, "not_ready", "the corrections store is still opening")
        try:
            if runtime.waiting_uploads >= settings.max_waiting_uploads:
                metrics.corrections_refused.labels("overloaded").inc()
                return _overloaded()
            with runtime.admitted_upload():
                correction = await read_correction(request, settings)
                key = idempotency_key(request)
        except (UploadError, ImageError) as error:
            metrics.corrections_refused.labels(error.code).inc()
            raise
        # Counted after the body is read, so that the keep-alive connection stays usable.
        address = request.remote_addr or "unknown"
        if not runtime.correction_limits.take(address, time.monotonic()):
            metrics.corrections_refused.labels("rate_limited").inc()
            metrics.errors.labels("rate_limited", "http").inc()
            wait_s = runtime.correction_limits.wait_s(address, time.monotonic())
            response, status = error_response(
                429, "rate_limited", "too many corrections from here; try again shortly"
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
            return response, status
        try:
            correction_id = await store.add(correction, key)
        except StoreError as error:
            logger.error("%s", error)
            metrics.corrections_refused.labels("unavailable").inc()
            metrics.errors.labels("unavailable", "http").inc()
            response, status = error_response(
                503, "unavailable", "the correction could not be stored; try again shortly"
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response, status
        metrics.corrections_stored.inc()
        return {"id": correction_id}, 201

    @app.get("/api/corrections/export")
    async def export_corrections() -> Any:
        store = runtime.store
        if refusal := _admin_refusal():
            return refusal
        assert store is not None

        async def lines() -> AsyncIterator[bytes]:
            async for stored in store.export():
                yield orjson.dumps(stored.as_json()) + b"\n"

        return Response(lines(), content_type="application/x-ndjson")

    @app.delete("/api/corrections/<correction_id>")
    async def delete_correction(correction_id: str) -> Any:
        store = runtime.store
        if refusal := _admin_refusal():
            return refusal
        assert store is not None
        if not await store.delete(correction_id):
            return error_response(404, "not_found", "no correction has that id")
        metrics.corrections_deleted.inc()
        return Response(status=204)

    def _admin_refusal() -> tuple[Response, int] | None:
        """404 without an admin token configured, 401 without the right one, else None."""
        if not settings.admin_token:
            # Without a token the routes do not exist: answered as any unknown path is.
            return error_response(404, "not_found", "not found")
        if not authorized(request, settings.admin_token):
            metrics.errors.labels("unauthorized", "http").inc()
            response, status = error_response(401, "unauthorized", "a valid admin token is needed")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response, status
        if runtime.store is None:
            return error_response(503, "not_ready", "the corrections store is still opening")
        return None

    def _overloaded() -> tuple[Response, int]:
        # Refused before the body is read, so a flood holds no memory: the connection
        # cannot carry another request then, so say so.
        metrics.errors.labels("overloaded", "http").inc()
        response, status = error_response(
            503, "overloaded", "too many uploads are waiting; try again shortly"
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        response.headers["Connection"] = "close"
        return response, status

    @app.websocket("/ws")
    async def stream() -> Any:
        # A page from another site is refused before the upgrade: nothing of the
        # connection reaches it, and the browser shows it only as close code 1006.
        origin = websocket.headers.get("Origin")
        if not origins.allows(origin, websocket.headers.get("Host")):
            metrics.connections_refused.labels("origin").inc()
            logger.info("refused a WebSocket from origin %r", origin)
            return error_response(403, "forbidden_origin", "this origin may not connect")
        # The other refusals are close codes after the upgrade, not HTTP statuses: a
        # browser's WebSocket never shows the status of a failed upgrade, only 1006, and
        # 1013 tells a client to try again later.
        await websocket.accept()
        if runtime.draining:
            metrics.connections_refused.labels("draining").inc()
            await websocket.close(GOING_AWAY, "server shutting down")
            return None
        if not runtime.ready:
            metrics.connections_refused.labels("loading").inc()
            await websocket.close(TRY_AGAIN_LATER, "the model is still loading")
            return None
        if len(runtime.sessions) >= settings.max_connections:
            metrics.connections_refused.labels("capacity").inc()
            await websocket.close(TRY_AGAIN_LATER, "too many connections")
            return None
        session = Session(
            websocket_ctx.websocket,
            runtime.worker,
            settings,
            metrics,
            hello=hello_message(runtime.model_info, settings),
            include_input=_flag(websocket.args.get("include_input")),
        )
        runtime.sessions.add(session)
        metrics.open_connections.inc()
        try:
            await session.run()
        finally:
            runtime.sessions.discard(session)
            metrics.open_connections.dec()
        return None

    @app.get("/")
    async def index() -> Response:
        return await static_file("index.html")

    @app.get("/<path:name>")
    async def static_file(name: str) -> Response:
        response = await send_from_directory(settings.web_dir, name)
        revalidate = name.endswith(REVALIDATE_SUFFIXES)
        response.headers["Cache-Control"] = REVALIDATE if revalidate else CACHE_A_DAY
        # Quart adds a 12-hour Expires; Cache-Control says it all, so drop the contradiction.
        response.headers.pop("Expires", None)
        return response

    @app.errorhandler(UploadError)
    async def upload_error(error: UploadError) -> Any:
        metrics.errors.labels(error.code, "http").inc()
        return error_response(error.status, error.code, error.message)

    @app.errorhandler(ImageError)
    async def image_error(error: ImageError) -> Any:
        metrics.errors.labels(error.code, "http").inc()
        status = 413 if error.code == "too_large" else 400
        return error_response(status, error.code, error.message)

    @app.errorhandler(DecodeError)
    async def decode_error(error: DecodeError) -> Any:
        metrics.errors.labels("internal", "http").inc()
        return error_response(500, "internal", str(error))

    @app.errorhandler(RequestEntityTooLarge)
    async def body_too_large(error: RequestEntityTooLarge) -> Any:
        metrics.errors.labels("too_large", "http").inc()
        limit = settings.max_message_bytes
        response, status = error_response(
            413, "too_large", f"picture is over the limit of {limit} bytes"
        )
        # The body stays unread, so this connection cannot carry another request: say so,
        # or a keep-alive client reuses it and sees "server disconnected".
        response.headers["Connection"] = "close"
        return response, status

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        if not has_request_context() or not request.path.startswith("/api/"):
            return error
        code = (error.name or "error").lower().replace(" ", "_")
        return error_response(error.code or 500, code, error.description or code)

    return app
