"""Run one server process: Hypercorn's configuration, the signals that stop it, graceful drain.

`serve_until_stopped` serves until SIGTERM or SIGINT, a stop from the parent process (a worker
of `--workers N`, see `server/workers.py`) or a model that fails to load. Stopping drains
first: pending snapshots are answered, then sockets close with 1001.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config

from server.config import Settings

# Room above the frame limit, so that a frame somewhat over it is refused with a `too_large`
# message on an open connection; past this, Hypercorn closes the connection (1009) rather
# than buffer it.
FRAME_HEADROOM = 4


def configure_logging(settings: Settings) -> None:
    """Log to stderr; with several workers each line names its process."""
    process = " [%(process)d]" if settings.workers > 1 else ""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s{process} %(name)s: %(message)s"
    )


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


GIL_SWITCH_INTERVAL_S = 0.0005


async def serve_until_stopped(
    settings: Settings,
    *,
    listening: socket.socket | None = None,
    parent_stop: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Serve until a signal or `parent_stop` (exit 0) or a model that fails to load (exit 1).

    A worker passes the `listening` socket its parent bound, and `parent_stop`, which returns
    when the parent asks the workers to stop.
    """
    # Imported here so that `--help` and flag errors answer without loading TensorFlow.
    from server.app import create_app, runtime_of

    # The event loop holds the GIL most of the time under load, and the threads that carry
    # pictures to and from the decode processes and the model wait up to the switch
    # interval for it at every hand-over (5 ms by default): with 0.5 ms a chunk's round trip
    # shrinks from ~15 ms to a few, which measured 880 -> see README answers/s at 256 drawers.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    app = create_app(settings)
    runtime = runtime_of(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    config = hypercorn_config(settings)
    if listening is not None:
        # Hypercorn serves an inherited socket given as an `fd://` bind.
        config.bind = [f"fd://{listening.detach()}"]

    async def shutdown_trigger() -> None:
        triggers: list[Awaitable[object]] = [stop.wait(), runtime.failed.wait()]
        if parent_stop is not None:
            triggers.append(parent_stop())
        waits = [asyncio.ensure_future(trigger) for trigger in triggers]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        await runtime.drain()
        _stop_ping_loops()

    await serve(app, config, shutdown_trigger=shutdown_trigger)
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
