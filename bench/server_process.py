"""Start `python -m server` as a real process on a free port and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


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

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then wait (SIGKILL after `timeout_s`); returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_server(
    log_dir: Path, *flags: str, env: dict[str, str] | None = None, timeout_s: float = 90.0
) -> RunningServer:
    """Start `python -m server` on a free port and wait until `/readyz` answers 200."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if "DIGITS_DATABASE_URL" not in environment and not any(
        flag.startswith("--database-url") for flag in flags
    ):
        # Each server gets a corrections store of its own, beside its log.
        flags = (*flags, "--database-url", f"sqlite:///{log_dir}/corrections-{port}.sqlite3")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--bind", f"127.0.0.1:{port}", *flags],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + timeout_s
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
    raise RuntimeError(f"server not ready within {timeout_s} s:\n{server.log()}")
