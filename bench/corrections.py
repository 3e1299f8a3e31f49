"""Corrections under load: many clients post what the page posts, to SQLite and PostgreSQL.

Run:  .venv/bin/python -m bench.corrections [--count 5000] [--clients 32] [--workers 2]
      (part of `make bench`; `--database-url URL` measures your own database instead)

Each body is the page's own: the final ink of a drawing recorded from the page
(bench/fixtures/page-ink.json, all its strokes at their canvas size), the answer it saw and
the model version, with an Idempotency-Key, as `web/js/corrections.js` sends it. Every tenth
post is refused (a label with a letter), to count that nothing refused is stored. After the
run, the export must hold exactly the answered corrections, each once.

Reported per store: throughput, latency percentiles, the server's CPU (all its processes)
and the load generator's CPU share (it runs on the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import measure
from bench.drawings import ink_states, load_drawings
from bench.postgres import PostgresCluster
from bench.server_process import ROOT, start_server

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"
TOKEN = "bench-admin-token"
REFUSED_EVERY = 10


def page_bodies(count: int) -> list[dict[str, Any]]:
    """`count` correction bodies as the page sends them, cycling through the recorded drawings."""
    finals = []
    for drawing in load_drawings():
        width, height, line_width, strokes = list(ink_states(drawing))[-1]
        ink = {
            "width": width, "height": height, "line_width": line_width,
            "strokes": [[[round(x, 1), round(y, 1)] for x, y in stroke] for stroke in strokes],
        }
        answer = {
            "digit": (drawing.digit + 1) % 10, "confidence": 0.62,
            "probabilities": [round(0.38 / 9, 4)] * 10, "empty": False,
        }
        finals.append((str(drawing.digit), ink, answer))
    bodies = []
    for number in range(count):
        label, ink, answer = finals[number % len(finals)]
        if number % REFUSED_EVERY == REFUSED_EVERY - 1:
            label = label + "a"
        bodies.append({"label": label, "ink": ink, "answer": answer, "model_version": "bench"})
    return bodies


async def post_all(
    base_url: str, bodies: Sequence[dict[str, Any]], clients: int
) -> tuple[dict[str, int], list[float], list[str]]:
    """Post every body from `clients` connections; statuses, latencies (ms), ids answered."""
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    ids: list[str] = []
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for number, body in enumerate(bodies):
        queue.put_nowait((number, json.dumps(body).encode()))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            while not queue.empty():
                number, content = queue.get_nowait()
                headers = {"Content-Type": "application/json",
                           "Idempotency-Key": f"bench-{os.getpid()}-{number}"}
                started = time.perf_counter()
                response = await http.post("/api/corrections", content=content, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000.0)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code == 201:
                    ids.append(response.json()["id"])

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses, latencies, ids


def run_store(name: str, database_url: str, arguments: argparse.Namespace) -> dict[str, Any]:
    """One store: start the server on it, post, check the export, and report."""
    bodies = page_bodies(arguments.count)
    body_bytes = [len(json.dumps(body)) for body in bodies]
    with tempfile.TemporaryDirectory() as folder:
        server = start_server(
            Path(folder), "--workers", str(arguments.workers), "--database-url", database_url,
            "--max-corrections-per-minute", "100000000",
            env={"DIGITS_ADMIN_TOKEN": TOKEN},
        )
        try:
            server_cpu = measure.CpuMeter(server.process.pid)
            generator = psutil.Process()
            generator_before = sum(generator.cpu_times()[:2])
            server_cpu.start()
            statuses, latencies, ids = asyncio.run(
                post_all(server.http_url, bodies, arguments.clients)
            )
            server_cpu.stop()
            generator_s = sum(generator.cpu_times()[:2]) - generator_before
            export = httpx.get(f"{server.http_url}/api/corrections/export",
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
            exported = [json.loads(line)["id"] for line in export.text.splitlines()]
        finally:
            server.stop()
    wall_s = server_cpu.wall_s
    return {
        "store": name,
        "posts": len(bodies),
        "clients": arguments.clients,
        "workers": arguments.workers,
        "body_bytes": measure.percentiles(body_bytes),
        "statuses": statuses,
        "per_s": round(len(bodies) / wall_s, 1),
        "latency_ms": measure.percentiles(latencies),
        "export_is_exactly_the_201s": sorted(exported) == sorted(ids),
        "server_cpu": measure.share(server_cpu.cpu_s, wall_s),
        "generator_cpu": measure.share(generator_s, wall_s),
        "wall_s": round(wall_s, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each store; print one line each and add the section to bench/results.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.corrections", description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", help="measure this database only")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    arguments = parser.parse_args(argv)
    section: dict[str, Any] = {
        "commit": measure.commit(ROOT),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": measure.machine(),
        "stores": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        if arguments.database_url:
            stores = [("given", arguments.database_url)]
        else:
            stores = [("sqlite", f"sqlite:///{folder}/bench.sqlite3")]
        cluster = None if arguments.database_url else PostgresCluster().start()
        try:
            if cluster is not None:
                stores.append(("postgresql", cluster.create_database("bench")))
            for name, url in stores:
                result = run_store(name, url, arguments)
                section["stores"].append(result)
                print(
                    f"{name}: {result['posts']} posts from {result['clients']} clients, "
                    f"{result['workers']} workers: {result['per_s']}/s, latency p50/p99 "
                    f"{result['latency_ms']['p50']:.0f}/{result['latency_ms']['p99']:.0f} ms, "
                    f"statuses {result['statuses']}, export exact: "
                    f"{result['export_is_exactly_the_201s']}; server CPU "
                    f"{result['server_cpu']['cores']} cores, generator "
                    f"{result['generator_cpu']['cores']} cores",
                    flush=True,
                )
        finally:
            if cluster is not None:
                cluster.stop()
    existing: dict[str, Any] = {}
    if arguments.out.exists():
        existing = json.loads(arguments.out.read_text())
    existing["corrections"] = section
    arguments.out.write_text(json.dumps(existing, indent=2) + "\n")
    exact = all(store["export_is_exactly_the_201s"] for store in section["stores"])
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
