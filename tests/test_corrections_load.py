"""Corrections under load and through a crash: every 201 is stored exactly once, on both stores.

Two workers share the port (`--workers 2`) and the store; 32 clients post at once. These are
correctness checks under concurrency, not timings (the figures are in `bench/`).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import TIMEOUT_S, RunningServer

TOKEN = "load-test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CLIENTS = 32
CORRECTIONS = 5000
# Every tenth post is refused (a bad label); its model_version marks it, to look for later.
REFUSED_EVERY = 10
# Posts answered before a worker is killed.
KILL_AFTER = 400
INK = {
    "width": 388, "height": 388, "line_width": 16,
    "strokes": [[[100.0 + step, 60.0 + 2 * step] for step in range(0, 120, 4)]],
}


def start(factory: Callable[..., RunningServer], database_url: str, workers: int) -> RunningServer:
    """A server of `workers` processes on the store, with no practical rate limit."""
    return factory(
        "--workers", str(workers), "--database-url", database_url,
        "--admin-token", TOKEN, "--max-corrections-per-minute", "10000000",
    )


def body(number: int) -> dict[str, Any]:
    """Correction number `number`: refused when it is a multiple of REFUSED_EVERY."""
    label = "12a" if number % REFUSED_EVERY == 0 else str(number % 10)
    return {"label": label, "ink": INK, "model_version": f"post-{number}"}


Answers = dict[int, httpx.Response | None]


async def post_all(base_url: str, numbers: list[int], answers: Answers | None = None) -> Answers:
    """Post each numbered correction from CLIENTS concurrent clients; None where it failed.

    Answers go into `answers` as they come, so a caller that cancels keeps those it got.
    """
    answers = {} if answers is None else answers
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in numbers:
        queue.put_nowait(number)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S * 3) as http:
            while not queue.empty():
                number = queue.get_nowait()
                try:
                    answers[number] = await http.post("/api/corrections", json=body(number))
                except httpx.ConnectError:
                    # Nothing listens any more: the server has gone.
                    answers[number] = None
                    return
                except httpx.HTTPError:
                    answers[number] = None

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return answers


def exported(base_url: str) -> list[dict[str, Any]]:
    """The whole export, read with the admin token."""
    response = httpx.get(f"{base_url}/api/corrections/export", headers=ADMIN, timeout=60)
    assert response.status_code == 200
    return [httpx.Response(200, content=line).json() for line in response.content.splitlines()]


@pytest.mark.slow
def test_every_201_is_stored_exactly_once_under_load(
    server_factory: Callable[..., RunningServer], database_url: str
) -> None:
    """2 workers, 32 clients, 5,000 posts: the export is exactly the 201s, nothing refused."""
    running = start(server_factory, database_url, workers=2)
    answers = asyncio.run(post_all(running.http_url, list(range(CORRECTIONS))))
    accepted = {
        answer.json()["id"]: number
        for number, answer in answers.items()
        if answer is not None and answer.status_code == 201
    }
    refused = [number for number, answer in answers.items()
               if answer is not None and answer.status_code == 400]
    assert len(accepted) == CORRECTIONS - CORRECTIONS // REFUSED_EVERY
    assert len(refused) == CORRECTIONS // REFUSED_EVERY
    lines = exported(running.http_url)
    assert sorted(line["id"] for line in lines) == sorted(accepted)
    for line in lines:
        number = accepted[line["id"]]
        assert line["model_version"] == f"post-{number}"
        assert line["label"] == str(number % 10)


def worker_processes(running: RunningServer) -> list[psutil.Process]:
    """The server's worker processes (the parent's spawned children)."""
    children = psutil.Process(running.process.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


@pytest.mark.slow
def test_a_killed_worker_loses_no_answered_correction(
    server_factory: Callable[..., RunningServer], database_url: str
) -> None:
    """SIGKILL to a worker mid-load: every 201 survives, and the store opens cleanly after."""
    running = start(server_factory, database_url, workers=2)
    workers = worker_processes(running)
    assert len(workers) == 2

    async def post_until_gone() -> Answers:
        answers: Answers = {}
        posting = asyncio.ensure_future(post_all(running.http_url, list(range(100_000)), answers))
        # Mid-load: once a few hundred have been answered, while 32 more are in flight.
        deadline = time.monotonic() + TIMEOUT_S * 3
        while len(answers) < KILL_AFTER and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        # The parent then stops the other worker too: clients see the server go away.
        await asyncio.wait([posting], timeout=TIMEOUT_S * 6)
        posting.cancel()
        await asyncio.gather(posting, return_exceptions=True)
        return answers

    answers = asyncio.run(post_until_gone())
    accepted = {answer.json()["id"] for answer in answers.values()
                if answer is not None and answer.status_code == 201}
    assert len(accepted) >= KILL_AFTER // 2, "too few answered before the kill to mean anything"
    assert running.process.wait(TIMEOUT_S * 6) != 0
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = start(server_factory, database_url, workers=1)
    assert accepted <= {line["id"] for line in exported(again.http_url)}
