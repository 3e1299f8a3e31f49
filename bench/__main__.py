"""`make bench`: drive a real server with what the page really sends, and report honestly.

Run:  make bench   (these, among others:)
      .venv/bin/python -m bench [--workers 1 2] [--duration 45] [--ink-drawers 64 256] ...
      .venv/bin/python -m bench --numbers [--workers 2] ...
      .venv/bin/python -m bench --attack [--attack-duration 20]

Traffic is the page's own, recorded by `python -m bench.record` into
bench/fixtures/page-ink.json: single digits, or with `--numbers` numbers of 3 to 5 digits
written across the pad; ink messages 20 a second while the pen moves, re-sequenced per
connection, or in the picture mode the page-format PNG of the canvas after each of them (as
binary frames). Drawers rest 0.5 to 2 s between drawings (seeded) and every update counts:
one the server skipped (latest wins) counts with the latency to the answer that covered it.

For each worker count it starts `python -m server --workers N` on a free port and measures
one idle drawer, ink drawers (64 and 256), picture drawers (64), closed-loop saturation, and
1,000 drawers who each draw one digit and stay connected ~10 s; beside each figure, the
server's CPU and peak memory (all its processes), the load generator's CPU share (it runs
on the same cores), and `/healthz` latency probed every 100 ms. Saturation is compared with
the in-process ceiling (ink rendering and the model on every core, no network), measured in
the same run. `--attack` measures a victim drawing ink at 10 updates/s while attackers send
the costliest valid messages (see bench/attack.py). Figures go to stdout and, by section, to
bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import attack, measure, report
from bench.drawings import (
    FIXTURE_PATH,
    Drawing,
    describe,
    load_drawings,
    slowed,
    socket_query,
)
from bench.load import (
    DEFLATE_VARIABLE,
    Health,
    Replay,
    Schedule,
    Tally,
    probe_health,
    process_id,
    run_drawers,
    run_saturation,
)
from bench.server_process import ROOT, RunningServer, start_server

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"
REST_S = (0.5, 2.0)
# Drawers start over this long, so that they do not send in step.
RAMP_S = 2.0
BETWEEN_SCENARIOS_S = 2.0


@dataclass(frozen=True)
class Options:
    """The knobs of one run (the command line, parsed)."""

    workers: list[int]
    ink_drawers: list[int]
    picture_drawers: list[int]
    many_drawers: int
    duration_s: float
    idle_s: float
    saturation_clients: int
    saturation_s: float
    ceiling_s: float
    attack_s: float
    processes: int
    seed: int
    url_query: str


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; exits with a one-line message on a missing fixture."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ink-drawers", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--picture-drawers", type=int, nargs="*", default=[64])
    parser.add_argument(
        "--many", type=int, default=1000, help="drawers who draw once and rest (0: skip)"
    )
    parser.add_argument("--duration", type=float, default=45.0, help="seconds of each load")
    parser.add_argument("--idle-duration", type=float, default=30.0)
    parser.add_argument("--saturation-clients", type=int, default=128)
    parser.add_argument("--saturation-duration", type=float, default=15.0)
    parser.add_argument("--ceiling-duration", type=float, default=10.0)
    parser.add_argument("--attack", action="store_true", help="measure fairness under attack")
    parser.add_argument("--attack-duration", type=float, default=20.0)
    parser.add_argument(
        "--processes", type=int, default=2, help="load generator processes to spread drawers over"
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="clients offer permessage-deflate, as browsers do (default: off)",
    )
    parser.add_argument(
        "--numbers",
        action="store_true",
        help="replay the recorded numbers (3 to 5 digits) instead of the single digits",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--fixture", type=Path, default=FIXTURE_PATH)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    arguments = parser.parse_args(argv)
    if not arguments.fixture.exists():
        parser.exit(2, f"python -m bench: no fixture {arguments.fixture}; run make bench-record\n")
    return arguments


# One scenario against a running server.

Job = tuple[Callable[..., Any], tuple[Any, ...]]


async def scenario(
    pool: Executor, server: RunningServer, jobs: Sequence[Job]
) -> tuple[list[Any], dict[str, Any]]:
    """Run jobs in the generator processes while measuring the server and the machine.

    Returns each job's tally and what was measured around them.
    """
    stop = asyncio.Event()
    health_task = asyncio.create_task(probe_health(server.http_url, stop))
    server_cpu = measure.CpuMeter(server.process.pid)
    # This process (probe, samplers) and its children, the generator processes.
    generator_cpu = measure.CpuMeter(psutil.Process().pid)
    machine_before = psutil.cpu_times()
    server_cpu.start()
    generator_cpu.start()
    with measure.MemorySampler(server.process.pid) as memory:
        futures = [asyncio.wrap_future(pool.submit(function, *args)) for function, args in jobs]
        tallies = list(await asyncio.gather(*futures))
    server_cpu.stop()
    generator_cpu.stop()
    stop.set()
    health: Health = await health_task
    busy = _busy_share(machine_before, psutil.cpu_times())
    wall_s = server_cpu.wall_s
    # The generator's meter spans the server too (a child of this process): take it out.
    generator_cpu_s = max(0.0, generator_cpu.cpu_s - server_cpu.cpu_s)
    return tallies, {
        "healthz_ms": measure.percentiles(health.latencies_ms),
        "healthz_failures": health.failures,
        "server_peak_rss_mib": memory.summary()["peak_mib"],
        "server_memory": memory.summary(),
        "server_cpu": measure.share(server_cpu.cpu_s, wall_s),
        "server_cpu_s": round(server_cpu.cpu_s, 2),
        # The event loop's process alone (with --workers N, the parent that only supervises).
        "server_main_process_cpu": measure.share(server_cpu.own_cpu_s, wall_s),
        "generator_cpu": measure.share(generator_cpu_s, wall_s),
        "machine_busy": round(busy, 3),
        "wall_s": round(wall_s, 1),
    }


def merged(tallies: Sequence[Tally]) -> Tally:
    """The tallies of several generator processes added up."""
    total = tallies[0]
    for other in tallies[1:]:
        total = total.merge(other)
    return total


def _busy_share(before: Any, after: Any) -> float:
    """The share of the machine's CPU time that was busy between two `psutil.cpu_times()`."""
    total = sum(after) - sum(before)
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (
        before.idle + getattr(before, "iowait", 0.0)
    )
    return 1.0 - idle / total if total > 0 else 0.0


def drawer_result(
    tally: Tally, measured: dict[str, Any], drawers: int, mode: str
) -> dict[str, Any]:
    """The figures of an open-loop drawer scenario."""
    drawing_s = tally.wall_s or 1.0
    return {
        "mode": mode,
        "drawers": drawers,
        "updates_sent": tally.updates_sent,
        "updates_per_s": round(tally.updates_sent / drawing_s, 1),
        "answers": tally.answers,
        "answers_per_s": round(tally.answers / drawing_s, 1),
        "update_latency_ms": measure.percentiles(tally.update_latencies_ms),
        "last_update_latency_ms": measure.percentiles(tally.last_update_latencies_ms),
        "server_reported_latency_ms": measure.percentiles(tally.server_latencies_ms),
        "drawings": tally.drawings,
        "last_update_answered": tally.drawings_answered,
        "last_update_overtaken": tally.drawings_overtaken,
        "last_update_never_answered": tally.drawings_unanswered,
        "final_answer_is_the_drawn_digit": round(
            tally.digits_right / max(tally.drawings_answered, 1), 3
        ),
        "errors": dict(tally.errors),
        "connections": tally.connections,
        "connect_failures": tally.connect_failures,
        "dropped_connections": tally.dropped,
        "close_codes": dict(tally.close_codes),
        "send_lag_ms": measure.percentiles(tally.send_lag_ms),
        "server_cpu_ms_per_answer": _per_answer(measured, tally.answers),
        "generator_processes": tally.processes,
        **measured,
    }


def _per_answer(measured: dict[str, Any], answers: int) -> float | None:
    """Server CPU milliseconds per answer: a cost that other tenants of the machine barely move."""
    if not answers or "server_cpu_s" not in measured:
        return None
    return round(measured["server_cpu_s"] * 1000.0 / answers, 2)


def split(schedules: list[Schedule], processes: int) -> list[list[Schedule]]:
    """Drawers dealt round-robin over the generator processes."""
    return [part for part in (schedules[start::processes] for start in range(processes)) if part]


def open_loop_jobs(
    url: str, replays: list[Replay], drawers: int, options: Options, duration_s: float
) -> list[Job]:
    """Drawers who draw digit after digit, resting between, for `duration_s`."""
    rng = random.Random(options.seed)
    begin = time.monotonic() + 1.5
    schedules = []
    for number in range(drawers):
        connect_at = begin + RAMP_S * number / drawers
        schedules.append(
            Schedule(
                connect_at=connect_at,
                first_drawing_at=begin + RAMP_S + rng.uniform(0.0, REST_S[1]),
                end_at=begin + RAMP_S + duration_s,
                rest_s=REST_S,
            )
        )
    processes = min(options.processes, drawers)
    return [
        (run_drawers, (url, replays, part, options.seed + index))
        for index, part in enumerate(split(schedules, processes))
    ]


def many_jobs(url: str, replays: list[Replay], drawers: int, options: Options) -> list[Job]:
    """Drawers who connect (200 a second), each draw one digit within 10 s, rest ~10 s."""
    rng = random.Random(options.seed)
    begin = time.monotonic() + 1.5
    ramp_s = drawers / 200.0
    schedules = [
        Schedule(
            connect_at=begin + ramp_s * number / drawers,
            first_drawing_at=begin + ramp_s + rng.uniform(0.0, 10.0),
            end_at=begin,
            rest_s=REST_S,
            drawings=1,
            linger_s=rng.uniform(9.0, 11.0),
        )
        for number in range(drawers)
    ]
    return [
        (run_drawers, (url, replays, part, options.seed + index))
        for index, part in enumerate(split(schedules, options.processes))
    ]


def saturation_jobs(url: str, replays: list[Replay], options: Options) -> list[Job]:
    """Closed-loop clients, dealt over the generator processes."""
    start_at = time.monotonic() + 1.5
    clients = options.saturation_clients
    shares = [len(range(index, clients, options.processes)) for index in range(options.processes)]
    return [
        (
            run_saturation,
            (url, replays, share, start_at, options.saturation_s, options.seed + index),
        )
        for index, share in enumerate(shares)
        if share
    ]


async def measure_server(
    pool: Executor,
    server: RunningServer,
    ink: list[Replay],
    pictures: list[Replay],
    options: Options,
) -> dict[str, Any]:
    """Every drawer scenario against one running server."""
    url = server.ws_url + (f"?{options.url_query}" if options.url_query else "")
    results: dict[str, Any] = {}

    async def run(name: str, jobs: list[Job], drawers: int, mode: str) -> None:
        print(f"  {name} ...", flush=True)
        tallies, measured = await scenario(pool, server, jobs)
        results[name] = drawer_result(merged(tallies), measured, drawers, mode)
        print(report.one_line(name, results[name]), flush=True)
        await asyncio.sleep(BETWEEN_SCENARIOS_S)

    idle = [
        (
            run_drawers,
            (
                url,
                ink,
                [
                    Schedule(
                        connect_at=time.monotonic() + 1.0,
                        first_drawing_at=time.monotonic() + 1.5,
                        end_at=time.monotonic() + 1.5 + options.idle_s,
                        rest_s=REST_S,
                    )
                ],
                options.seed,
            ),
        )
    ]
    await run("idle drawer, ink", idle, 1, "ink")
    for drawers in options.ink_drawers:
        jobs = open_loop_jobs(url, ink, drawers, options, options.duration_s)
        await run(f"{drawers} drawers, ink", jobs, drawers, "ink")
    for drawers in options.picture_drawers:
        jobs = open_loop_jobs(url, pictures, drawers, options, options.duration_s)
        await run(f"{drawers} drawers, pictures", jobs, drawers, "pictures")
    if options.saturation_s > 0 and options.saturation_clients > 0:
        print("  saturation, ink ...", flush=True)
        tallies, measured = await scenario(pool, server, saturation_jobs(url, ink, options))
        tally = merged(tallies)
        results["saturation, ink"] = {
            "clients": options.saturation_clients,
            "predictions_per_s": round(tally.answers / options.saturation_s, 1),
            "update_latency_ms": measure.percentiles(tally.update_latencies_ms),
            "server_cpu_ms_per_answer": _per_answer(measured, tally.answers),
            "errors": dict(tally.errors),
            "connect_failures": tally.connect_failures,
            "dropped_connections": tally.dropped,
            **measured,
        }
        print(f"    {results['saturation, ink']['predictions_per_s']} predictions/s", flush=True)
        await asyncio.sleep(BETWEEN_SCENARIOS_S)
    if options.many_drawers:
        jobs = many_jobs(url, ink, options.many_drawers, options)
        await run(
            f"{options.many_drawers} drawers, ink, one digit each",
            jobs,
            options.many_drawers,
            "ink",
        )
    return results


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """Generator processes, started and ready before any clock runs.

    Spawned, so that they import only what they run; a process still starting up would send
    its first drawings late and in a burst.
    """
    pool = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"))
    started: set[int] = set()
    while len(started) < workers:
        tasks = [pool.submit(process_id, 0.05) for _ in range(workers)]
        started.update(task.result() for task in tasks)
    return pool


def load_run(options: Options, drawings: list[Drawing], results: dict[str, Any]) -> None:
    """The ceiling, then every scenario for each worker count."""
    from bench.ceiling import ceiling
    from bench.pictures import drawing_frames, render

    ink = [Replay.ink(drawing) for drawing in drawings]
    pictures: list[Replay] = []
    if options.picture_drawers:
        print("rendering page-format picture frames ...", flush=True)
        frames = [drawing_frames(drawing) for drawing in drawings]
        pictures = [
            Replay.pictures(drawing, drawing_frames, render(drawing.width, drawing.height, 1.0, []))
            for drawing, drawing_frames in zip(drawings, frames, strict=True)
        ]
        results["traffic"]["picture_frames"] = report.frame_sizes(drawings, frames)
    ceiling_per_s = cpu_ms = None
    if options.ceiling_s > 0:
        print("in-process ceiling ...", flush=True)
        ceiling_per_s, cpu_ms = ceiling(drawings, options.ceiling_s)
        print(f"  {ceiling_per_s:.0f} predictions/s, {cpu_ms:.2f} ms of CPU each", flush=True)
        results["ceiling"] = {
            "predictions_per_s": round(ceiling_per_s, 1),
            "cpu_ms_per_prediction": round(cpu_ms, 2),
            "what": "every recorded ink state rendered and preprocessed as the server does "
            "(server.decoding.prepare, with the input PNG), model in batches of 64, one process "
            "per core, no network",
        }
    results["servers"] = {}
    with tempfile.TemporaryDirectory() as logs, spawn_pool(options.processes) as pool:
        for workers in options.workers:
            print(f"server with --workers {workers}", flush=True)
            server = start_server(Path(logs), "--workers", str(workers))
            try:
                run = asyncio.run(measure_server(pool, server, ink, pictures, options))
            finally:
                server.stop()
            saturation = run.get("saturation, ink")
            if saturation and ceiling_per_s:
                saturation["share_of_ceiling"] = round(
                    saturation["predictions_per_s"] / ceiling_per_s, 2
                )
                # Robust to other tenants of the machine: CPU per answer, ceiling over server.
                if saturation["server_cpu_ms_per_answer"]:
                    saturation["cpu_efficiency_vs_ceiling"] = round(
                        cpu_ms / saturation["server_cpu_ms_per_answer"], 2
                    )
            results["servers"][str(workers)] = run


def attack_run(options: Options, drawings: list[Drawing], results: dict[str, Any]) -> None:
    """The victim alone, then under each attack and all of them together."""
    from bench.pictures import drawing_frames

    victim = [Replay.ink(slowed(drawing, 2)) for drawing in drawings]
    desktop = next(d for d in drawings if d.device.startswith("desktop"))
    page_picture = drawing_frames(desktop)[-1]
    phases: list[tuple[str, list[str]]] = [
        ("quiet", []),
        ("strokes at the limits", ["strokes"]),
        ("4096x4096 pictures", ["pictures"]),
        ("HTTP upload flood", ["uploads"]),
        ("all together", ["strokes", "pictures", "uploads"]),
    ]
    results["attack"] = {}
    with tempfile.TemporaryDirectory() as logs, spawn_pool(3) as pool:
        for name, kinds in phases:
            print(f"attack: {name} ...", flush=True)
            server = start_server(Path(logs))
            try:
                phase = asyncio.run(
                    attack_phase(pool, server, victim, kinds, page_picture, options)
                )
            finally:
                server.stop()
            results["attack"][name] = phase
            print(report.attack_line(name, phase), flush=True)


async def attack_phase(
    pool: Executor,
    server: RunningServer,
    victim: list[Replay],
    kinds: list[str],
    page_picture: bytes,
    options: Options,
) -> dict[str, Any]:
    """One phase: the victim draws while the attackers of `kinds` (if any) attack."""
    url = server.ws_url + (f"?{options.url_query}" if options.url_query else "")
    begin = time.monotonic() + 1.5
    schedule = Schedule(
        connect_at=begin,
        first_drawing_at=begin + 0.5,
        end_at=begin + options.attack_s,
        rest_s=REST_S,
    )
    jobs: list[Job] = [(run_drawers, (url, victim, [schedule], options.seed))]
    socket_kinds = [kind for kind in kinds if kind != "uploads"]
    for group in (socket_kinds, ["uploads"] if "uploads" in kinds else []):
        if group:
            jobs.append(
                (
                    attack.run_attackers,
                    (url, server.http_url, group, page_picture, begin, options.attack_s + 1.0),
                )
            )
    tallies, measured = await scenario(pool, server, jobs)
    attackers: attack.AttackTally | None = None
    for tally in tallies[1:]:
        attackers = tally if attackers is None else attackers.merge(tally)
    return {
        "victim": drawer_result(tallies[0], {}, 1, "ink, 10 updates/s"),
        "attackers": report.attackers(attackers),
        **measured,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    arguments = parse(argv)
    if arguments.deflate:
        # Read by bench.load in every generator process, which are spawned after this.
        os.environ[DEFLATE_VARIABLE] = "1"
    drawings = load_drawings(arguments.fixture, numbers=arguments.numbers)
    if not drawings:
        what = "numbers" if arguments.numbers else "digits"
        print(
            f"python -m bench: no {what} in {arguments.fixture}; run make bench-record",
            file=sys.stderr,
        )
        return 2
    options = Options(
        workers=arguments.workers,
        ink_drawers=arguments.ink_drawers,
        picture_drawers=arguments.picture_drawers,
        many_drawers=arguments.many,
        duration_s=arguments.duration,
        idle_s=arguments.idle_duration,
        saturation_clients=arguments.saturation_clients,
        saturation_s=arguments.saturation_duration,
        ceiling_s=arguments.ceiling_duration,
        attack_s=arguments.attack_duration,
        processes=arguments.processes,
        seed=arguments.seed,
        url_query=socket_query(arguments.fixture),
    )
    started = time.monotonic()
    section: dict[str, Any] = {
        "commit": measure.commit(ROOT),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": measure.machine(),
        "options": {key: value for key, value in vars(options).items()},
        "permessage_deflate": arguments.deflate,
        "traffic": describe(drawings),
    }
    if arguments.attack:
        attack_run(options, drawings, section)
    else:
        load_run(options, drawings, section)
    section["took_s"] = round(time.monotonic() - started, 1)
    print(report.tables(section), flush=True)

    existing: dict[str, Any] = {}
    if arguments.out.exists():
        try:
            existing = json.loads(arguments.out.read_text())
        except ValueError:
            existing = {}
    key = "attack" if arguments.attack else "load, numbers" if arguments.numbers else "load"
    kept = ("load", "load, numbers", "attack", "corrections")
    results = {
        "method": report.METHOD,
        **{name: existing[name] for name in kept if name in existing},
        key: section,
    }
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {arguments.out} ({key}; took {section['took_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
