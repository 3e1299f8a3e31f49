"""Serve the recogniser: `python -m server [--bind HOST:PORT] [--model PATH] ...` (`--help`).

Every flag also reads from a `DIGITS_*` environment variable (see `server/config.py`).
SIGTERM or SIGINT shut down gracefully: pending snapshots are answered, then sockets close
with 1001.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
from collections.abc import Sequence

from hypercorn.asyncio import serve
from hypercorn.config import Config

from server.config import Settings

# Room above the frame limit, so that a frame somewhat over it is refused with a `too_large`
# message on an open connection; past this, Hypercorn closes the connection (1009) rather
# than buffer it.
FRAME_HEADROOM = 4


def main(argv: Sequence[str] | None = None) -> int:
    """Parse settings, then serve until a signal; returns the exit status."""
    settings = Settings.from_sources(argv)
    if not settings.model_path.is_file():
        print(f"python -m server: error: no model file at {settings.model_path}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(serve_until_stopped(settings))
    except OSError as error:
        print(f"python -m server: error: cannot serve on {settings.bind}: {error}", file=sys.stderr)
        return 1


def hypercorn_config(settings: Settings) -> Config:
    """Hypercorn's configuration for these settings."""
    config = Config()
    config.bind = [settings.bind]
    config.accesslog = None
    # Hypercorn's errors go through the root handler `main` sets up, not a second one.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.graceful_timeout = settings.shutdown_grace_s
    config.websocket_max_message_size = FRAME_HEADROOM * settings.max_message_bytes
    config.websocket_ping_interval = settings.ping_interval_s
    # Hypercorn pings but never checks for the pong; a connection that stays silent for a
    # ping period and then some is gone (iOS Safari vanishes without a close frame).
    config.read_timeout = math.ceil(settings.ping_interval_s + settings.ping_timeout_s)
    return config


async def serve_until_stopped(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or a model that fails to load (exit 1)."""
    # Imported here so that `--help` and flag errors answer without loading TensorFlow.
    from server.app import create_app, runtime_of

    app = create_app(settings)
    runtime = runtime_of(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    async def shutdown_trigger() -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(runtime.failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        await runtime.drain()
        _stop_ping_loops()

    await serve(app, hypercorn_config(settings), shutdown_trigger=shutdown_trigger)
    return 1 if runtime.failed.is_set() else 0


def _stop_ping_loops() -> None:
    """Cancel Hypercorn's WebSocket ping loops, which outlive their connections.

    Hypercorn 0.18 notices that a connection closed only when its ping loop wakes, a whole
    ping interval later; until then the connection's task lingers and would hold shutdown
    for that long (and, cancelled at the end, log a CancelledError on Python 3.11). After
    `drain()` no WebSocket is open, so the loops have nothing left to ping.
    """
    for task in asyncio.all_tasks():
        if getattr(task.get_coro(), "__qualname__", "") == "WSStream._send_pings":
            task.cancel()


if __name__ == "__main__":
    raise SystemExit(main())
