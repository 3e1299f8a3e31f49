"""Debian's nginx with the shipped deploy/nginx.conf in front of two real servers.

The test renders deploy/nginx.conf itself, substituting only the example backend addresses,
the listen port and the log paths, and includes it in a minimal main configuration (the part
Debian's /etc/nginx/nginx.conf plays in production) whose paths all lie under the test's
temporary folder. Where nginx is not installed the tests fail, saying so: `make test` and CI
install it with `scripts/install-system-packages`.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from bench.postgres import PostgresCluster
from tests.conftest import TIMEOUT_S, RunningServer, free_port
from tests.drawing import draw_digit, encode

# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
NGINX = shutil.which(
    "nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
)
SITE_PATH = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"

pytestmark = pytest.mark.slow

# What Debian's /etc/nginx/nginx.conf provides around a site file, with every path of its own.
MAIN_CONFIG = """\
{user}
worker_processes 2;
error_log {prefix}/logs/error.log;
pid {prefix}/nginx.pid;
events {{
    worker_connections 256;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {prefix}/digits.conf;
}}
"""

# One line of the shipped `digits` log format: the request, its status and the backends tried.
LOG_LINE = re.compile(r'"(?P<request>[^"]*)" (?P<status>\d{3}) .*upstream="(?P<upstream>[^"]*)"')
# start_nginx polls this through nginx until it proxies; the tests leave those lines out.
READINESS_PATH = "/readyz"
ADMIN_TOKEN = "nginx-test-admin-token"


def render_site(replacements: dict[str, str]) -> str:
    """deploy/nginx.conf with each example value replaced; each must occur exactly once."""
    site = SITE_PATH.read_text()
    for example, value in replacements.items():
        # An edit of the shipped file that drops an example value must fail here, not test
        # some other configuration.
        count = site.count(example)
        assert count == 1, f"{SITE_PATH} should contain {example!r} once, not {count} times"
        site = site.replace(example, value)
    return site


@dataclass
class Logged:
    """One request in nginx's access log."""

    request: str
    status: int
    upstreams: list[str]


@dataclass
class Balancer:
    """A running nginx in front of two backends."""

    process: subprocess.Popen[bytes]
    port: int
    prefix: Path
    backends: tuple[RunningServer, RunningServer]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        """nginx's own messages so far (for failure messages)."""
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted((self.prefix / "logs").glob("*error.log"))
        ) + (self.prefix / "stderr.log").read_text(errors="replace")

    def logged(self) -> list[Logged]:
        """Every request nginx has finished, in order."""
        lines = (self.prefix / "logs" / "digits.access.log").read_text().splitlines()
        entries = []
        for line in lines:
            match = LOG_LINE.search(line)
            assert match, f"unexpected access log line: {line}"
            upstreams = match["upstream"].split(", ") if match["upstream"] != "-" else []
            entries.append(Logged(match["request"], int(match["status"]), upstreams))
        return entries

    def wait_logged(self, count: int) -> list[Logged]:
        """The test's own requests (not the readiness probes), once nginx has logged `count`.

        A WebSocket is logged only when nginx has closed both sides, a moment after the client
        sees the close; an HTTP request just after its answer went out.
        """
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            entries = [
                entry
                for entry in self.logged()
                if not entry.request.startswith(f"GET {READINESS_PATH} ")
            ]
            if len(entries) >= count:
                return entries
            assert time.monotonic() < deadline, f"{len(entries)} of {count} requests logged"
            time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), then SIGKILL after TIMEOUT_S."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx(prefix: Path, backends: tuple[RunningServer, RunningServer]) -> Balancer:
    """Start nginx with the rendered site on a free loopback port; wait until it proxies."""
    assert NGINX is not None
    for folder in ("logs", "temp"):
        (prefix / folder).mkdir(parents=True)
    port = free_port()
    logs = prefix / "logs"
    site = render_site(
        {
            "listen 80;": f"listen 127.0.0.1:{port};",
            "127.0.0.1:8001": f"127.0.0.1:{backends[0].port}",
            "127.0.0.1:8002": f"127.0.0.1:{backends[1].port}",
            "/var/log/nginx/digits.access.log": str(logs / "digits.access.log"),
            "/var/log/nginx/digits.error.log": str(logs / "digits.error.log"),
        }
    )
    (prefix / "digits.conf").write_text(site)
    # As root, nginx would run its workers as `nobody`, who cannot enter pytest's private
    # temporary folder; as anyone else nginx ignores `user` with a warning, so it is left out.
    user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(MAIN_CONFIG.format(user=user, prefix=prefix))
    command = [
        NGINX, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
        "-e", str(logs / "startup.error.log"), "-g", "daemon off;",
    ]
    with (prefix / "stderr.log").open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    balancer = Balancer(process, port, prefix, backends)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{balancer.log()}")
        try:
            if httpx.get(balancer.http_url + READINESS_PATH, timeout=1.0).status_code == 200:
                return balancer
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    balancer.stop()
    raise RuntimeError(f"nginx not proxying within {TIMEOUT_S} s:\n{balancer.log()}")


@pytest.fixture
def balancer(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> Iterator[Balancer]:
    """nginx with the shipped site in front of two fresh servers; stopped before them."""
    if NGINX is None:
        pytest.fail(
            "nginx is not installed (looked on PATH, in /usr/sbin and /usr/local/sbin):"
            " run scripts/install-system-packages, as `make test` does",
            pytrace=False,
        )
    backends = (server_factory(), server_factory())
    running = start_nginx(tmp_path / "nginx", backends)
    yield running
    running.stop()


def address(backend: RunningServer) -> str:
    """How nginx's log names a backend."""
    return f"127.0.0.1:{backend.port}"


async def predict_over_websocket(balancer: Balancer, image: bytes) -> dict[str, Any]:
    """Open /ws through nginx, read the hello, send one binary picture, return the answer."""
    # The page's own origin: nginx passes Origin and Host through, so it is same-origin.
    async with connect(
        balancer.ws_url,
        origin=websockets.Origin(balancer.http_url),
        proxy=None,
        open_timeout=TIMEOUT_S,
        close_timeout=TIMEOUT_S,
    ) as socket:
        hello = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
        assert hello["type"] == "hello", hello
        await socket.send(image)
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
    return answer


async def predict_over_http(client: httpx.AsyncClient, image: bytes) -> dict[str, Any]:
    """POST one picture to /api/predict through nginx and return the prediction object."""
    response = await client.post(
        "/api/predict", content=image, headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_page_stream_and_upload_work_through_nginx_on_both_backends(
    balancer: Balancer,
) -> None:
    """Through nginx the page loads, /ws streams and /api/predict answers, round robin."""
    seven = encode(draw_digit(7))
    async with httpx.AsyncClient(base_url=balancer.http_url, timeout=TIMEOUT_S) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<canvas" in page.text

        streamed = await predict_over_websocket(balancer, seven)
        assert streamed["type"] == "prediction", streamed
        assert streamed["seq"] == 0
        assert streamed["digit"] == 7
        assert streamed["empty"] is False

        uploaded = await predict_over_http(client, seven)
        assert uploaded["digit"] == 7
        assert uploaded["empty"] is False
        assert uploaded["probabilities"] == pytest.approx(streamed["probabilities"], abs=1e-4)

        # One more of each in the other order: as round robin alternates, each kind of
        # request meets both backends.
        assert (await predict_over_http(client, seven))["digit"] == 7
        assert (await predict_over_websocket(balancer, seven))["digit"] == 7

    entries = balancer.wait_logged(5)
    assert all(len(entry.upstreams) == 1 for entry in entries), entries
    backends = {address(backend) for backend in balancer.backends}
    for kind in ("GET /ws ", "POST /api/predict "):
        assert {entry.upstreams[0] for entry in entries if entry.request.startswith(kind)} == (
            backends
        ), entries


async def test_stopping_a_backend_moves_new_connections_to_the_other(balancer: Balancer) -> None:
    """With one backend stopped, new pages, uploads and WebSockets all reach the other."""
    stopped, survivor = balancer.backends
    stopped.stop(TIMEOUT_S)
    seven = encode(draw_digit(7))
    rounds = 3
    async with httpx.AsyncClient(base_url=balancer.http_url, timeout=TIMEOUT_S) as client:
        for _ in range(rounds):
            page = await client.get("/")
            assert page.status_code == 200
            assert "<canvas" in page.text
            assert (await predict_over_http(client, seven))["digit"] == 7
            assert (await predict_over_websocket(balancer, seven))["digit"] == 7

    entries = balancer.wait_logged(3 * rounds)
    # Every request was answered by the survivor ...
    assert all(entry.upstreams[-1] == address(survivor) for entry in entries), entries
    assert all(entry.status in (200, 101) for entry in entries), entries
    # ... and nginx did try the stopped one first at least once: this is failover, not luck.
    assert [address(stopped), address(survivor)] in [entry.upstreams for entry in entries]


@pytest.fixture
def shared_store_balancer(
    server_factory: Callable[..., RunningServer], tmp_path: Path, postgres: PostgresCluster
) -> Iterator[Balancer]:
    """nginx in front of two servers, as on two hosts, sharing one PostgreSQL store."""
    url = postgres.create_database("behind_nginx")
    flags = ("--database-url", url, "--proxy-hops", "1")
    environment = {"DIGITS_ADMIN_TOKEN": ADMIN_TOKEN}
    backends = (server_factory(*flags, env=environment), server_factory(*flags, env=environment))
    running = start_nginx(tmp_path / "nginx", backends)
    yield running
    running.stop()


async def test_backends_behind_nginx_share_one_corrections_store(
    shared_store_balancer: Balancer,
) -> None:
    """Corrections posted through nginx reach both backends and land in one store, each once."""
    ink = {"width": 280, "height": 280, "line_width": 18, "strokes": [[[140, 40], [140, 240]]]}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(
        base_url=shared_store_balancer.http_url, timeout=TIMEOUT_S
    ) as client:
        posted = [
            await client.post("/api/corrections", json={"label": str(n % 10), "ink": ink})
            for n in range(10)
        ]
        assert [response.status_code for response in posted] == [201] * 10
        ids = sorted(response.json()["id"] for response in posted)
        # Each backend exports the whole shared store.
        for _ in range(2):
            export = await client.get("/api/corrections/export", headers=admin)
            assert export.status_code == 200
            assert sorted(json.loads(line)["id"] for line in export.text.splitlines()) == ids
    entries = shared_store_balancer.wait_logged(12)
    backends = {address(backend) for backend in shared_store_balancer.backends}
    posts = [entry for entry in entries if entry.request.startswith("POST /api/corrections ")]
    assert {entry.upstreams[0] for entry in posts} == backends, entries
