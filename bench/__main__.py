"""`make bench`: drive a real server with concurrent drawers and report latency and throughput.

Run:  make bench   (or: .venv/bin/python -m bench [--workers 1 2] [--clients 64] [--duration 60])

For each worker count it starts `python -m server --workers N` on a free port and measures:
one idle client (last snapshot to answer), N drawers streaming 20 snapshots/s while the pen
moves (update latency, last-snapshot latency, errors, /healthz latency, server memory over
the run), and closed-loop saturation (predictions/s), beside the in-process ceiling (decode,
preprocess and batched model in one process, no network). Figures go to stdout and to
bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.ceiling import ceiling
from bench.drawings import load_drawings
from bench.load import idle_client, probe_health, run_drawers, saturate
from bench.server_process import RunningServer, start_server

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and p99 in milliseconds (NaN for none)."""
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    points = np.percentile(np.asarray(values), [50, 95, 99])
    return {
        "p50": round(float(points[0]), 1),
        "p95": round(float(points[1]), 1),
        "p99": round(float(points[2]), 1),
    }


class MemorySampler:
    """Samples the resident memory of the server and its worker processes every 0.5 s."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                members = [self.process, *self.process.children(recursive=True)]
                total = sum(member.memory_info().rss for member in members if member.is_running())
            except psutil.Error:
                total = 0
            self.samples.append((time.monotonic() - started, total))
            self._stop.wait(0.5)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        """Peak, and the mean of the first and last tenth of the run, in MiB."""
        values = [value for _, value in self.samples if value]
        tenth = max(1, len(values) // 10)
        mib = 1024 * 1024
        return {
            "peak_mib": round(max(values) / mib, 1),
            "first_tenth_mib": round(sum(values[:tenth]) / tenth / mib, 1),
            "last_tenth_mib": round(sum(values[-tenth:]) / tenth / mib, 1),
        }


async def measure(
    server: RunningServer, drawings: list[list[bytes]], clients: int, duration_s: float
) -> dict[str, Any]:
    """All the socket scenarios against one running server."""
    print("  idle client ...", flush=True)
    idle = await idle_client(server.ws_url, drawings, rounds=40, pause_s=0.15)

    print(f"  {clients} drawers for {duration_s:.0f} s ...", flush=True)
    stop = asyncio.Event()
    health = asyncio.create_task(probe_health(server.http_url, stop))
    with MemorySampler(server.process.pid) as memory:
        load = await run_drawers(server.ws_url, drawings, clients, duration_s)
    stop.set()
    health_latencies = await health

    print("  saturation ...", flush=True)
    saturation = await saturate(server.ws_url, drawings, clients=max(clients, 96), duration_s=15.0)
    return {
        "idle_last_snapshot_ms": percentiles(idle),
        "load": {
            "clients": clients,
            "duration_s": round(load.duration_s, 1),
            "snapshots_sent": load.snapshots_sent,
            "snapshots_per_s_per_client": round(load.snapshots_sent / load.duration_s / clients, 1),
            "predictions": load.predictions,
            "predictions_per_s": round(load.predictions / load.duration_s, 1),
            "update_latency_ms": percentiles(load.update_latencies_ms),
            "last_snapshot_latency_ms": percentiles(load.final_latencies_ms),
            "drawings_finished": len(load.final_latencies_ms),
            "drawings_last_snapshot_overtaken": load.overtaken_finals,
            "unanswered_session_last_snapshots": load.unanswered_finals,
            "errors": load.errors,
            "healthz_ms": percentiles(health_latencies),
        },
        "memory": memory.summary(),
        "saturation_predictions_per_s": round(saturation, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of streaming load")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    arguments = parser.parse_args(argv)

    drawings, _ = load_drawings(128)
    print("in-process ceiling ...", flush=True)
    ceiling_per_s = ceiling([drawing[-1] for drawing in drawings], duration_s=10.0)
    print(f"  {ceiling_per_s:.0f} predictions/s", flush=True)

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores",
        "python": platform.python_version(),
        "ceiling_predictions_per_s": round(ceiling_per_s, 1),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as logs:
        for workers in arguments.workers:
            print(f"server with --workers {workers}", flush=True)
            server = start_server(Path(logs), "--workers", str(workers))
            try:
                run = asyncio.run(measure(server, drawings, arguments.clients, arguments.duration))
            finally:
                server.stop()
            run["saturation_vs_ceiling"] = round(
                run["saturation_predictions_per_s"] / ceiling_per_s, 2
            )
            results["runs"][str(workers)] = run
            print(json.dumps(run, indent=2), flush=True)
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
