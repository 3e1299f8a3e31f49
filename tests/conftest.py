"""Shared fixtures: a real server process on a free port, and one scaled timeout constant."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every wait in the suite is a multiple of this, so a slow machine can stretch them all.
TIMEOUT_SCALE = float(os.environ.get("DIGITS_TEST_TIMEOUT_SCALE", "1"))
TIMEOUT_S = 10.0 * TIMEOUT_SCALE
STARTUP_TIMEOUT_S = 90.0 * TIMEOUT_SCALE


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    """A `python -m server` process and how to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        """What the server printed so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_server(tmp_dir: Path, *flags: str, env: dict[str, str] | None = None) -> RunningServer:
    """Start `python -m server` on a free port and wait until `/readyz` answers 200."""
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--bind", f"127.0.0.1:{port}", *flags],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment,
        )
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.http_url}/readyz", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready within {STARTUP_TIMEOUT_S} s:\n{server.log()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server with default settings, shared by the tests that do not change settings."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with their own flags; each is stopped after the test."""
    started: list[RunningServer] = []

    def factory(*flags: str, env: dict[str, str] | None = None) -> RunningServer:
        running = start_server(tmp_path, *flags, env=env)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()
