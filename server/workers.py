"""Several server processes on one port (`--workers N`): the parent, and each worker's start.

- The parent binds one socket per worker, all on the same port with `SO_REUSEPORT` (what
  Hypercorn's `create_sockets` does when `workers > 1`), so that a bad address is reported
  at once and the kernel spreads new connections evenly over the workers that listen.
- Each worker is a fresh interpreter (`spawn`: TensorFlow's threads do not survive a fork)
  that receives its socket, serves it as Hypercorn's `fd://` bind, loads its own model and
  answers `/readyz` and `/metrics` for itself.
- SIGTERM or SIGINT to the parent sets an event that every worker watches, as Hypercorn's own
  multi-process mode does; each worker drains like a single server (pending snapshots
  answered, sockets closed with 1001). The parent exits 0 once every worker has exited 0
  after being asked (or was ended by a group-wide SIGTERM before it could serve), and
  non-zero otherwise.
- A worker that exits unasked (a crash, a model that cannot load) stops the others: the
  parent does not restart workers, its orchestrator restarts the whole server. A worker also
  stops when its parent dies, so none is left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import signal
import socket
import time
from functools import partial
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

from server.config import Settings
from server.serving import configure_logging, hypercorn_config, serve_until_stopped

logger = logging.getLogger(__name__)

# How often a worker checks whether its parent asked it to stop (Hypercorn polls as often).
POLL_S = 0.1
# Past the two graceful periods (drain, then Hypercorn's), a worker that has not exited is
# killed; the margin covers a worker still importing TensorFlow when asked to stop.
STOP_MARGIN_S = 30.0


def serve_workers(settings: Settings) -> int:
    """Serve with `settings.workers` processes until a signal; returns the exit status."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    sockets = listening_sockets(settings)

    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            name = signal.Signals(signal_number).name
            logger.info("%s: stopping %d workers", name, settings.workers)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    # Workers inherit an ignored SIGINT (Hypercorn does the same), so that Ctrl+C, which the
    # terminal sends to every process of the group, cannot interrupt one still starting; a
    # worker that serves handles SIGINT itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    workers: list[BaseProcess] = []
    worker_settings = settings_per_worker(settings)
    try:
        for number, listening in enumerate(sockets, start=1):
            worker = context.Process(
                target=run_worker,
                args=(worker_settings, listening, stop),
                name=f"worker-{number}",
            )
            worker.start()
            workers.append(worker)
    except BaseException:
        stop.set()
        _wait_for(workers, stop, settings)
        raise
    finally:
        # The workers hold their own copies now; closing ours means that a worker's socket
        # stops taking connections as soon as the worker closes it.
        for listening in sockets:
            listening.close()
        signal.signal(signal.SIGINT, request_stop)
    pids = ", ".join(str(worker.pid) for worker in workers)
    logger.info("started %d workers on %s (pids %s)", len(workers), settings.bind, pids)
    return _wait_for(workers, stop, settings)


def settings_per_worker(settings: Settings) -> Settings:
    """Each worker's settings: the decode processes are shared out, at least one each.

    Two workers with two decode processes each would put four decoders on two cores and
    add their memory twice over for nothing.
    """
    if settings.decode_processes == 0:
        return settings
    share = max(1, settings.decode_processes // settings.workers)
    return dataclasses.replace(settings, decode_processes=share)


def listening_sockets(settings: Settings) -> list[socket.socket]:
    """One socket per worker, bound to the settings' address with `SO_REUSEPORT`."""
    config = hypercorn_config(settings)
    config.workers = settings.workers
    sockets: list[socket.socket] = []
    try:
        for _ in range(settings.workers):
            sockets.extend(config.create_sockets().insecure_sockets)
            # With port 0 the first socket picks a port; the others must share it.
            config.bind = [f"{settings.host}:{sockets[0].getsockname()[1]}"]
    except OSError:
        for created in sockets:
            created.close()
        raise
    return sockets


def _wait_for(workers: list[BaseProcess], stop: Event, settings: Settings) -> int:
    """Wait until every worker has exited; returns 0 if all exited 0 when asked, else non-zero."""
    status = 0
    running = list(workers)
    deadline: float | None = None
    while running:
        if stop.is_set() and deadline is None:
            deadline = time.monotonic() + 2 * settings.shutdown_grace_s + STOP_MARGIN_S
        if deadline is not None and time.monotonic() > deadline:
            for worker in running:
                logger.error("worker %d did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.join()
            return 1
        wait([worker.sentinel for worker in running], timeout=1.0)
        for worker in [worker for worker in running if worker.exitcode is not None]:
            running.remove(worker)
            worker.join()
            exitcode = worker.exitcode
            assert exitcode is not None
            if not stop.is_set():
                logger.error("worker %d exited unasked; stopping the others", worker.pid)
                stop.set()
                status = status or 1
            elif exitcode == -signal.SIGTERM:
                # SIGTERM sent to the whole process group (as systemd does) ends a worker that
                # is still starting, before it handles the signal: it had nothing to drain.
                continue
            if exitcode != 0:
                logger.error("worker %d exited with %d", worker.pid, exitcode)
                # A negative exit code is a signal's number; the status must be positive.
                status = status or (exitcode if exitcode > 0 else 1)
    return status


def run_worker(settings: Settings, listening: socket.socket, stop: Event) -> None:
    """A worker process: serve `listening` until a signal or the parent's `stop`."""
    configure_logging(settings)
    parent_stop = partial(_until_asked_to_stop, stop)
    raise SystemExit(
        asyncio.run(serve_until_stopped(settings, listening=listening, parent_stop=parent_stop))
    )


async def _until_asked_to_stop(stop: Event) -> None:
    """Return once the parent sets `stop`, or has died without setting it."""
    parent = multiprocessing.parent_process()
    while not stop.is_set() and (parent is None or parent.is_alive()):
        await asyncio.sleep(POLL_S)
