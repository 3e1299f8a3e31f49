"""What the orchestrating process measures besides latency: memory, CPU, the machine.

Owns percentiles (always p50/p95/p99 with their sample count, never maxima), the sampler of
the server's resident memory (the server and all its child processes), the CPU meters of the
server and of the load generator, and the description of the machine the figures come from.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

MIB = 1024 * 1024


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p95 and p99 (ms, one decimal) and how many samples they come from."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    points = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {
        "p50": round(float(points[0]), 1),
        "p95": round(float(points[1]), 1),
        "p99": round(float(points[2]), 1),
        "n": len(values),
    }


def tree(process: psutil.Process) -> list[psutil.Process]:
    """A process and all its descendants that are still there."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


class MemorySampler:
    """Samples the resident memory of a process and all its children every 0.25 s."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for member in tree(self.process):
                with contextlib.suppress(psutil.Error):
                    total += member.memory_info().rss
            if total:
                self.samples.append(total)
            self._stop.wait(0.25)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float | None]:
        """Peak, and the means of the first and last tenths of the samples, in MiB."""
        if not self.samples:
            return {"peak_mib": None, "first_tenth_mib": None, "last_tenth_mib": None}
        tenth = max(1, len(self.samples) // 10)
        return {
            "peak_mib": round(max(self.samples) / MIB, 1),
            "first_tenth_mib": round(sum(self.samples[:tenth]) / tenth / MIB, 1),
            "last_tenth_mib": round(sum(self.samples[-tenth:]) / tenth / MIB, 1),
        }


class CpuMeter:
    """CPU seconds used by a process tree between `start()` and `stop()`.

    Children are looked up at both ends; a child that exits in between takes its time with it
    (the server's decode processes live as long as the server).
    """

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._started: dict[int, float] = {}
        self._began = 0.0
        self.cpu_s = 0.0
        self.own_cpu_s = 0.0  # The process itself, without its children.
        self.wall_s = 0.0

    def _times(self) -> dict[int, float]:
        times = {}
        for member in tree(self.process):
            try:
                used = member.cpu_times()
                times[member.pid] = used.user + used.system
            except psutil.Error:
                pass
        return times

    def start(self) -> None:
        self._began = time.monotonic()
        self._started = self._times()

    def stop(self) -> None:
        ended = self._times()
        self.wall_s = time.monotonic() - self._began
        self.cpu_s = sum(used - self._started.get(pid, 0.0) for pid, used in ended.items())
        pid = self.process.pid
        self.own_cpu_s = ended.get(pid, 0.0) - self._started.get(pid, 0.0)


def share(cpu_s: float, wall_s: float) -> dict[str, float]:
    """CPU time over a wall time: in cores, and as a share of the whole machine."""
    cores = cpu_s / wall_s if wall_s > 0 else 0.0
    return {"cores": round(cores, 2), "of_machine": round(cores / (os.cpu_count() or 1), 3)}


def machine() -> dict[str, Any]:
    """The CPU model, cores, memory, OS and Python the figures come from."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "logical_cores": psutil.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def commit(root: Path, *paths: str) -> str:
    """The commit measured, with "+changes" when the working tree (or `paths` in it) differs."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


TallyT = TypeVar("TallyT")


def summed(first: TallyT, second: TallyT) -> TallyT:
    """Two tallies of one dataclass added field by field (wall time is the longer)."""
    merged = type(first)()
    for name, value in vars(first).items():
        theirs = getattr(second, name)
        setattr(merged, name, max(value, theirs) if name == "wall_s" else value + theirs)
    return merged
