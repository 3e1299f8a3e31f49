"""Hardening against a real server: origins, limits, headers, shutdown and `--workers`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.config import WEB_DIR, Settings
from server.headers import CONTENT_SECURITY_POLICY
from server.origins import OriginPolicy, parse_origins
from server.ratelimit import Persistence
from tests.conftest import STARTUP_TIMEOUT_S, TIMEOUT_S, RunningServer, free_port, start_server
from tests.pictures import digit_png
from tests.test_server_ws import (
    answer_to,
    assert_prediction,
    assert_recovers,
    connected,
    metric,
    receive,
    snapshot,
    until_metric,
)

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
LISTED_ORIGINS = "https://digits.example, http://localhost:3000"
# Debian's Chromium, as the page tests drive it.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with short limits and a list of allowed origins.

    Idle after 2 s, 5 messages a second, closed after 2 s over that rate; only pages from
    https://digits.example and http://localhost:3000 (and scripted clients) may connect.
    """
    running = start_server(
        tmp_path_factory.mktemp("strict"),
        "--idle-timeout-s", "2",
        "--max-messages-per-s", "5",
        "--rate-limit-close-after-s", "2",
        "--allowed-origins", LISTED_ORIGINS,
    )
    yield running
    running.stop(TIMEOUT_S)


async def upgrade_status(server: RunningServer, host: str, origin: str | None) -> int:
    """The HTTP status answering a WebSocket upgrade with these `Host` and `Origin` headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [
        "GET /ws HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        status_line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def refusal(server: RunningServer, origin: str) -> httpx.Headers:
    """Connect from a page of `origin`, expecting HTTP 403; returns the refusal's headers."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws_url, origin=origin, open_timeout=TIMEOUT_S):
            pass
    response = refused.value.response
    assert response.status_code == 403
    assert json.loads(response.body or b"")["error"]["code"] == "forbidden_origin"
    return httpx.Headers(list(response.headers.raw_items()))


def assert_security_headers(headers: httpx.Headers) -> None:
    """The three security headers are there, and nothing names the server."""
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert "server" not in headers


# --- the origin check --------------------------------------------------------------------


async def test_own_origin_localhost_and_scripts_may_connect(server: RunningServer) -> None:
    """By default the page's own origin, localhost on any port and scripts without Origin."""
    own = f"http://127.0.0.1:{server.port}"
    for origin in (own, "http://localhost:5173", "https://localhost", "http://[::1]:8000", None):
        async with connected(server, origin=origin):
            pass


async def test_other_origins_are_refused_before_the_upgrade(server: RunningServer) -> None:
    """A page from any other origin gets HTTP 403 instead of a WebSocket, counted in metrics."""
    pattern = 'digits_connections_refused_total\\{reason="origin"\\}'
    before = await metric(server, pattern)
    others = ("https://evil.example", f"http://evil.example:{server.port}", "null", "file://")
    for origin in others:
        assert_security_headers(await refusal(server, origin))
    assert await metric(server, pattern) == before + len(others)
    async with connected(server) as (socket, _):
        await assert_recovers(socket, server, 0)


async def test_same_origin_follows_the_host_header(server: RunningServer) -> None:
    """Behind a proxy that forwards `Host`, the page's own origin is that host, http or https."""
    assert await upgrade_status(server, "digits.example", "https://digits.example") == 101
    assert await upgrade_status(server, "digits.example:8443", "https://digits.example:8443") == 101
    assert await upgrade_status(server, "digits.example", "http://digits.example:8080") == 403
    assert await upgrade_status(server, "digits.example", "https://evil.example") == 403


async def test_listed_origins_replace_the_default(strict_server: RunningServer) -> None:
    """With `--allowed-origins`, exactly the listed pages may connect, and scripts still may."""
    for origin in ("https://digits.example", "https://DIGITS.example:443", "http://localhost:3000"):
        async with connected(strict_server, origin=origin):
            pass
    async with connected(strict_server):
        pass
    own = f"http://127.0.0.1:{strict_server.port}"
    for origin in (own, "http://localhost:3001", "http://digits.example"):
        await refusal(strict_server, origin)


def test_origin_rules() -> None:
    """The origin policy, rule by rule, without a server."""
    default = OriginPolicy()
    assert default.allows(None, None)
    assert default.allows("http://localhost:1", "example.com")
    assert default.allows("https://example.com", "example.com")
    assert default.allows("http://example.com", "EXAMPLE.com:80")
    assert not default.allows("https://example.com", "example.com:80")
    assert not default.allows("https://example.com.evil.example", "example.com")
    assert not default.allows("https://user@example.com", "example.com")
    assert not default.allows("", "example.com")
    listed = OriginPolicy(parse_origins("https://a.example/, http://b.example:81"))
    assert listed.allows("https://a.example:443", None)
    assert listed.allows("http://b.example:81", None)
    assert not listed.allows("http://localhost", "localhost")
    assert OriginPolicy(parse_origins("*")).allows("null", None)
    assert parse_origins(" , ") is None


@pytest.mark.parametrize("value", ["example.com", "ftp://example.com", "https://a.example/path"])
def test_bad_allowed_origins_exit_2(capsys: pytest.CaptureFixture[str], value: str) -> None:
    """An entry that is not an origin is refused like any bad flag: status 2, one line."""
    with pytest.raises(SystemExit) as exited:
        Settings.from_sources(["--allowed-origins", value], {})
    assert exited.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- the limits --------------------------------------------------------------------------


async def test_idle_connection_is_closed_with_1000(strict_server: RunningServer) -> None:
    """A connection that sends nothing for `idle_timeout_s` is closed: 1000, reason "idle"."""
    pattern = 'digits_connections_closed_total\\{reason="idle"\\}'
    before = await metric(strict_server, pattern)
    async with connected(strict_server) as (socket, _):
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), TIMEOUT_S)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle")
    assert await metric(strict_server, pattern) == before + 1


async def test_connection_that_keeps_sending_is_not_idle(strict_server: RunningServer) -> None:
    """Each message restarts the idle timer: a slow but steady client stays connected."""
    async with connected(strict_server) as (socket, _):
        # Three seconds of messages, 0.3 s apart, against a two-second idle limit.
        for seq in range(10):
            await socket.send(snapshot(seq))
            assert_prediction(await answer_to(socket, seq), seq)
            await asyncio.sleep(0.3)
        await assert_recovers(socket, strict_server, 10)


async def test_client_that_keeps_flooding_is_closed_with_1008(
    strict_server: RunningServer,
) -> None:
    """Over the message rate for `rate_limit_close_after_s`: `rate_limited`, then 1008."""
    pattern = 'digits_connections_closed_total\\{reason="rate_limited"\\}'
    before = await metric(strict_server, pattern)
    async with connected(strict_server) as (socket, _):
        received = asyncio.create_task(read_until_closed(socket))
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT_S):
                for seq in range(10**6):
                    await socket.send(snapshot(seq))
                    await asyncio.sleep(0.02)
        messages = await asyncio.wait_for(received, TIMEOUT_S)
    assert (socket.close_code, socket.close_reason) == (1008, "rate limit exceeded")
    assert any(message.get("code") == "rate_limited" for message in messages)
    assert await metric(strict_server, pattern) == before + 1
    async with connected(strict_server) as (socket, _):
        await assert_recovers(socket, strict_server, 0)


async def test_a_burst_is_not_a_violation(strict_server: RunningServer) -> None:
    """A burst over the rate is rate-limited but the connection stays open once it slows."""
    async with connected(strict_server) as (socket, _):
        for seq in range(15):
            await socket.send(snapshot(seq))
        assert_prediction(await answer_to(socket, 14), 14)
        await assert_recovers(socket, strict_server, 15)


async def read_until_closed(socket: ClientConnection) -> list[dict[str, Any]]:
    """Every message the server sends until it closes the connection."""
    messages = []
    try:
        async for text in socket:
            messages.append(json.loads(text))
    except ConnectionClosed:
        pass
    return messages


def test_persistence_rules() -> None:
    """A streak of refusals less than `quiet_s` apart ends the connection after `limit_s`."""
    persistence = Persistence(limit_s=2.0, quiet_s=1.0)
    assert not persistence.refused(10.0)
    assert not persistence.refused(10.9)
    assert not persistence.refused(11.8)
    assert persistence.refused(12.0)
    assert not persistence.refused(20.0)  # after a quiet second, a new streak


# --- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/js/main.js", 200),
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/api/model", 200),
        ("GET", "/no-such-file", 404),
        ("DELETE", "/api/predict", 405),
        ("POST", "/api/predict", 415),
    ],
)
def test_every_answer_has_the_security_headers(
    server: RunningServer, method: str, path: str, status: int
) -> None:
    """Pages, files, APIs and errors all carry CSP, nosniff and no-referrer, and no Server."""
    response = httpx.request(method, server.http_url + path, timeout=TIMEOUT_S)
    assert response.status_code == status
    assert_security_headers(response.headers)


async def test_hypercorn_errors_name_no_server(server: RunningServer) -> None:
    """A request Hypercorn itself refuses (malformed) is answered without a Server header."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    try:
        head = await asyncio.wait_for(reader.read(65536), TIMEOUT_S)
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 400")
    assert not re.search(rb"^server:", head, re.IGNORECASE | re.MULTILINE)


class InlineFinder(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block, and every URL the page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.blocked += [f"<{tag} {name}>" for name in attributes if name.startswith("on")]
        if "style" in attributes:
            self.blocked.append(f"<{tag} style>")
        if tag == "style" or (tag == "script" and "src" not in attributes):
            self.blocked.append(f"<{tag}> without src")
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_page_has_nothing_inline() -> None:
    """The page has no inline script, style or handler, and loads only relative URLs."""
    finder = InlineFinder()
    finder.feed((WEB_DIR / "index.html").read_text())
    assert finder.blocked == []
    assert finder.urls and all(not re.match(r"^[a-z]+:|^//", url) for url in finder.urls)


@pytest.mark.browser
def test_page_goes_live_under_its_policy(server: RunningServer) -> None:
    """In Chromium, the policy blocks nothing of the page and lets its WebSocket through."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda message: errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.http_url + "/")
            page.wait_for_selector("[data-role=status][data-state=live]", timeout=TIMEOUT_S * 1000)
        finally:
            browser.close()
    assert [error for error in errors if "Content Security Policy" in error] == []


# --- shutdown ----------------------------------------------------------------------------


async def test_sigint_answers_the_pending_snapshot_then_exits_0(
    server_factory: Callable[..., RunningServer],
) -> None:
    """Ctrl+C drains like SIGTERM: a snapshot sent just before is answered, then 1001, exit 0."""
    running = server_factory("--debounce-ms", "3000", "--max-wait-ms", "3000")
    received = 'digits_snapshots_received_total\\{transport="ws"\\}'
    async with connected(running) as (socket, _):
        await socket.send(snapshot(0))
        await until_metric(running, received, lambda value: value == 1)
        running.process.send_signal(signal.SIGINT)
        assert_prediction(await receive(socket), 0)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(running.process.wait, TIMEOUT_S) == 0


# --- several workers ---------------------------------------------------------------------


def marked_processes(marker: str) -> list[psutil.Process]:
    """Every live process whose environment carries `DIGITS_TEST_RUN=marker`."""
    found = []
    for process in psutil.process_iter():
        try:
            if (
                process.environ().get("DIGITS_TEST_RUN") == marker
                and process.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def worker_processes(running: RunningServer) -> list[psutil.Process]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    children = psutil.Process(running.process.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def connections_on_port(process: psutil.Process, port: int) -> list[str]:
    """The status of each TCP socket of a process on the port (LISTEN, ESTABLISHED, ...)."""
    return [
        connection.status
        for connection in process.net_connections(kind="tcp")
        if connection.laddr and connection.laddr.port == port
    ]


async def until_listening(running: RunningServer, workers: int) -> list[psutil.Process]:
    """The worker processes, once each listens on the port (which it does once it is ready)."""
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        while True:
            found = worker_processes(running)
            listening = [
                worker for worker in found if "LISTEN" in connections_on_port(worker, running.port)
            ]
            if len(listening) == workers:
                assert len(found) == workers
                return found
            await asyncio.sleep(0.1)


async def test_workers_share_one_port(server_factory: Callable[..., RunningServer]) -> None:
    """`--workers 2`: two processes listen on the port, both serve, SIGTERM exits 0, none left."""
    marker = uuid.uuid4().hex
    running = server_factory("--workers", "2", env={"DIGITS_TEST_RUN": marker})
    workers = await until_listening(running, 2)
    assert running.log().count("server.app: ready in") == 2

    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        for _ in range(16):
            # A new connection each time, so that the kernel may pick either worker.
            answer = await http.post(
                f"{running.http_url}/api/predict",
                content=digit_png(7),
                headers={"Content-Type": "image/png", "Connection": "close"},
            )
            assert answer.status_code == 200 and answer.json()["digit"] == 7

    async def converse(number: int) -> ClientConnection:
        socket = await connect(running.ws_url, open_timeout=TIMEOUT_S)
        assert (await receive(socket))["type"] == "hello"
        await socket.send(snapshot(number))
        assert_prediction(await answer_to(socket, number), number)
        return socket

    sockets = await asyncio.gather(*(converse(number) for number in range(16)))
    # Each worker holds some of the sixteen connections (the kernel spreads them by hash:
    # all on one worker would be a one-in-thirty-thousand chance).
    assert all("ESTABLISHED" in connections_on_port(worker, running.port) for worker in workers)

    running.process.terminate()
    for socket in sockets:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(running.process.wait, TIMEOUT_S) == 0
    _, alive = psutil.wait_procs(workers, timeout=TIMEOUT_S)
    assert alive == []
    assert marked_processes(marker) == []


def test_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    """With `--workers 2`, a model that cannot load exits non-zero and leaves no process."""
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")
    marker = uuid.uuid4().hex
    finished = subprocess.run(
        [sys.executable, "-m", "server", "--workers", "2", "--model", str(broken),
         "--bind", f"127.0.0.1:{free_port()}",
         "--database-url", f"sqlite:///{tmp_path}/c.sqlite3"],
        capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S, check=False,
        env={**os.environ, "DIGITS_TEST_RUN": marker},
    )
    assert finished.returncode == 1
    assert "cannot load model" in finished.stderr
    _, alive = psutil.wait_procs(marked_processes(marker), timeout=TIMEOUT_S)
    assert alive == []


# --- decode processes --------------------------------------------------------------------


def test_decode_processes_end_with_a_killed_server(
    server_factory: Callable[..., RunningServer],
) -> None:
    """The decode processes serve predictions, and exit even when the server is killed."""
    marker = uuid.uuid4().hex
    running = server_factory("--decode-processes", "2", env={"DIGITS_TEST_RUN": marker})
    decoders = [
        process for process in psutil.Process(running.process.pid).children()
        if "spawn_main" in " ".join(process.cmdline())
    ]
    assert len(decoders) == 2
    answer = httpx.post(
        f"{running.http_url}/api/predict",
        content=digit_png(7),
        headers={"Content-Type": "image/png"},
        timeout=TIMEOUT_S,
    )
    assert answer.status_code == 200 and answer.json()["digit"] == 7
    running.process.kill()
    running.process.wait(TIMEOUT_S)
    _, alive = psutil.wait_procs(marked_processes(marker), timeout=TIMEOUT_S)
    assert alive == []


def test_decoding_in_a_thread_gives_the_same_answers(
    server_factory: Callable[..., RunningServer],
) -> None:
    """`--decode-processes 0` decodes in the server process and answers alike."""
    running = server_factory("--decode-processes", "0")
    assert [
        child for child in psutil.Process(running.process.pid).children()
        if "spawn_main" in " ".join(child.cmdline())
    ] == []
    for digit in (1, 7):
        answer = httpx.post(
            f"{running.http_url}/api/predict",
            content=digit_png(digit),
            headers={"Content-Type": "image/png"},
            timeout=TIMEOUT_S,
        )
        assert answer.status_code == 200 and answer.json()["digit"] == digit
