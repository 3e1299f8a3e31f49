"""Shared fixtures: a real server process on a free port, and one scaled timeout constant."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import server_process
from bench.postgres import PostgresCluster
from bench.server_process import RunningServer, free_port

__all__ = ["STARTUP_TIMEOUT_S", "TIMEOUT_S", "RunningServer", "free_port", "start_server"]

# Every wait in the suite is a multiple of this, so a slow machine can stretch them all.
TIMEOUT_SCALE = float(os.environ.get("DIGITS_TEST_TIMEOUT_SCALE", "1"))
TIMEOUT_S = 10.0 * TIMEOUT_SCALE
STARTUP_TIMEOUT_S = 90.0 * TIMEOUT_SCALE


def start_server(tmp_dir: Path, *flags: str, env: dict[str, str] | None = None) -> RunningServer:
    """Start `python -m server` on a free port and wait until `/readyz` answers 200."""
    return server_process.start_server(tmp_dir, *flags, env=env, timeout_s=STARTUP_TIMEOUT_S)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server with default settings, shared by the tests that do not change settings."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop(TIMEOUT_S)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster of Debian's packages, shared by the session's tests."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, database_name: str) -> str:
    """An empty database of each kind: a SQLite file, or a new database in the cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/corrections.sqlite3"
    cluster = request.getfixturevalue("postgres")
    assert isinstance(cluster, PostgresCluster)
    return cluster.create_database(database_name)


@pytest.fixture
def database_name(request: pytest.FixtureRequest) -> str:
    """A database name unique to this test."""
    return "test_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


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
        running.stop(TIMEOUT_S)
