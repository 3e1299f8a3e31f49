"""The in-process ceiling: ink rendering, preprocessing and the batched model, no network.

Every core runs a process of its own that renders recorded ink states exactly as the server
does (`server.decoding.prepare`, with the 28x28 input PNG the page asks for) and runs them
through the model in batches of 64, with no sockets, queues or processes in between. Their
summed predictions per second are what this machine could at best answer; the server's
closed-loop saturation is reported as a share of it.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from bench.drawings import Drawing, Point, ink_states

BATCH_SIZE = 64
State = tuple[int, int, float, tuple[tuple[Point, ...], ...]]


def ink_snapshots(drawings: Sequence[Drawing]) -> list[State]:
    """Every non-empty ink state of the drawings: what the server renders per update."""
    return [state for drawing in drawings for state in ink_states(drawing) if state[3]]


_loaded: dict[str, Any] = {}


def _load(states: list[State]) -> None:
    """Set up one process: one core for TensorFlow, the model warmed up, the snapshots."""
    from model.inference import Classifier
    from server.protocol import StrokesSnapshot

    # TensorFlow would otherwise start a thread per core in every process.
    classifier = Classifier(threads=1)
    classifier.warm_up()
    _loaded["classifier"] = classifier
    _loaded["snapshots"] = [StrokesSnapshot(0, *state) for state in states]


def _process_id(pause_s: float) -> int:
    """This process's id, after a pause that leaves the next task to another process."""
    time.sleep(pause_s)
    return os.getpid()


def _count(start_at: float, duration_s: float) -> tuple[int, float]:
    """One core's share: predictions made between `start_at` and `start_at + duration_s`."""
    from server.decoding import DecodeLimits, prepare

    limits = DecodeLimits(max_bytes=1024 * 1024, max_pixels=4096 * 4096)
    classifier = _loaded["classifier"]
    snapshots = _loaded["snapshots"]
    blank = np.zeros((28, 28), np.float32)
    time.sleep(max(0.0, start_at - time.monotonic()))
    started_cpu = time.process_time()
    done = 0
    while time.monotonic() < start_at + duration_s:
        batch = []
        for number in range(done, done + BATCH_SIZE):
            prepared = prepare(snapshots[number % len(snapshots)], limits, include_input=True)
            batch.append(blank if prepared.model_input is None else prepared.model_input)
        classifier.predict(np.stack(batch))
        done += BATCH_SIZE
    return done, time.process_time() - started_cpu


def ceiling(
    drawings: Sequence[Drawing], duration_s: float, processes: int | None = None
) -> tuple[float, float]:
    """Predictions per second with every core rendering ink and running the model.

    Also returns the CPU milliseconds each prediction took, which other tenants of the
    machine barely change.
    """
    states = ink_snapshots(drawings)
    processes = processes or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, context, initializer=_load, initargs=(states,)) as pool:
        # Every process has loaded the model once each has answered; then the clock starts.
        answered: set[int] = set()
        while len(answered) < processes:
            tasks = [pool.submit(_process_id, 0.05) for _ in range(processes)]
            answered.update(task.result() for task in tasks)
        start_at = time.monotonic() + 0.5
        tasks = [pool.submit(_count, start_at, duration_s) for _ in range(processes)]
        counts = [task.result() for task in tasks]
    done = sum(count for count, _ in counts)
    cpu_s = sum(used for _, used in counts)
    return done / duration_s, cpu_s * 1000.0 / max(done, 1)
