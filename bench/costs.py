"""Per-picture cost of the picture path, bytes to model input, in one process.

Run:  .venv/bin/python -m bench.costs [--runs 300]

Each case is a canvas as browsers send it: the digits 0, 1, 4 and 7 (the runs cycle through
them) drawn with anti-aliased round strokes of width side/14 along dense, slightly shaky
pointer paths, in a box of 0.7 of the side, encoded as PNG. "total" decodes the
bytes and preprocesses them exactly as the server does (`server.decoding.prepare`); "decode"
is `open_image` alone, the part that is Pillow's PNG decoder. The table gives medians, in
milliseconds, of this process's CPU time and of wall time: other processes on the machine
make single timings noisy, and on a busy machine wall time also counts their turns.
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import PIL
from PIL import Image

from server.decoding import DecodeLimits, prepare
from server.images import open_image

# Pen paths in a unit box (x right, y down), as a person draws them.
DIGIT_PATHS: dict[int, list[list[tuple[float, float]]]] = {
    0: [
        [
            (
                0.5 + 0.32 * math.sin(2 * math.pi * step / 36),
                0.5 - 0.45 * math.cos(2 * math.pi * step / 36),
            )
            for step in range(37)
        ]
    ],
    1: [[(0.42, 0.18), (0.55, 0.05), (0.55, 0.95)]],
    4: [[(0.6, 0.05), (0.12, 0.65), (0.85, 0.65)], [(0.62, 0.3), (0.62, 0.95)]],
    7: [[(0.12, 0.08), (0.88, 0.08), (0.4, 0.95)]],
}
# A pointer event every this much of the digit's box, with a slight hand tremor of this size.
POINT_STEP = 0.012
TREMOR = 0.002
# The server's default limits.
LIMITS = DecodeLimits(max_bytes=1024 * 1024, max_pixels=4096 * 4096)


@dataclass(frozen=True)
class Case:
    """One kind of picture: its side in pixels and how the canvas is encoded."""

    name: str
    side: int
    # "L": greyscale, black on white; "RGB": opaque black on white; "RGBA": black ink on
    # transparent black, as canvas.toDataURL gives.
    mode: str


CASES = (
    Case("280x280 greyscale PNG", 280, "L"),
    Case("280x280 RGBA PNG (toDataURL)", 280, "RGBA"),
    Case("440x440 opaque RGB canvas PNG", 440, "RGB"),
    Case("388x388 opaque RGB PNG", 388, "RGB"),
    Case("1320x1320 RGBA PNG (3x phone)", 1320, "RGBA"),
)


def pointer_path(stroke: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """A stroke as the dense, slightly shaky points that pointer events give."""
    points = []
    for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
        steps = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / POINT_STEP))
        points += [
            (x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps) for step in range(steps)
        ]
    points.append(stroke[-1])
    return [
        (x + TREMOR * math.sin(0.31 * index), y + TREMOR * math.cos(0.23 * index))
        for index, (x, y) in enumerate(points)
    ]


def coverage(digit: int, side: int) -> Image.Image:
    """How much of each pixel the pen covers (0..255), as a browser anti-aliases a stroke.

    A round-capped stroke covers a pixel by how far its centre lies inside the pen's edge:
    full within radius - 1/2 of the path, none beyond radius + 1/2, linear in between.
    """
    radius = side / 14 / 2
    left, top, size = 0.2 * side, 0.12 * side, 0.7 * side
    distance = np.full((side, side), np.inf, dtype=np.float64)
    for stroke in DIGIT_PATHS[digit]:
        points = [(left + x * size, top + y * size) for x, y in pointer_path(stroke)]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            # Only the pixels near this segment can be covered by it.
            first_row = max(0, math.floor(min(y0, y1) - radius - 1))
            last_row = min(side, math.ceil(max(y0, y1) + radius + 2))
            first_column = max(0, math.floor(min(x0, x1) - radius - 1))
            last_column = min(side, math.ceil(max(x0, x1) + radius + 2))
            ys = np.arange(first_row, last_row)[:, None] + 0.5
            xs = np.arange(first_column, last_column)[None, :] + 0.5
            along_x, along_y = x1 - x0, y1 - y0
            length = max(along_x * along_x + along_y * along_y, 1e-12)
            share = np.clip(((xs - x0) * along_x + (ys - y0) * along_y) / length, 0.0, 1.0)
            away = np.hypot(xs - (x0 + share * along_x), ys - (y0 + share * along_y))
            region = distance[first_row:last_row, first_column:last_column]
            np.minimum(region, away, out=region)
    covered = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    return Image.fromarray(np.round(covered * 255.0).astype(np.uint8), mode="L")


def canvas_png(digit: int, case: Case) -> bytes:
    """A digit as the PNG bytes a browser would send for this kind of canvas."""
    ink = coverage(digit, case.side)
    paper = Image.eval(ink, lambda value: 255 - value)
    if case.mode == "L":
        picture = paper
    elif case.mode == "RGB":
        picture = Image.merge("RGB", (paper, paper, paper))
    else:
        # Unpainted canvas pixels are transparent black; ink is black with its coverage as alpha.
        black = Image.new("L", ink.size, 0)
        picture = Image.merge("RGBA", (black, black, black, ink))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def prepare_bytes(picture: bytes) -> object:
    """Bytes to model input, the server's way."""
    return prepare(picture, LIMITS, include_input=False).model_input


def decode_bytes(picture: bytes) -> object:
    """Bytes to a decoded picture only: the part of the cost that is Pillow's decoder."""
    return open_image(picture, LIMITS.max_pixels)


STEPS: dict[str, Callable[[bytes], object]] = {"decode": decode_bytes, "total": prepare_bytes}


def median_ms(
    pictures: Sequence[bytes], runs: int, steps: dict[str, Callable[[bytes], object]]
) -> dict[str, tuple[float, float]]:
    """Median CPU and wall ms per call of each step over `runs` rounds, cycling the pictures.

    The steps take turns within each round, so a burst of load from other processes slows
    them alike. CPU time (this process's) does not count the time another process holds the
    core, so it stays steady on a busy machine where wall time does not.
    """
    for step in steps.values():
        for picture in pictures:
            step(picture)
    processor: dict[str, list[float]] = {name: [] for name in steps}
    wall: dict[str, list[float]] = {name: [] for name in steps}
    for run in range(runs):
        picture = pictures[run % len(pictures)]
        for name, step in steps.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            step(picture)
            processor[name].append((time.process_time() - started_cpu) * 1000.0)
            wall[name].append((time.perf_counter() - started) * 1000.0)
    return {
        name: (statistics.median(processor[name]), statistics.median(wall[name])) for name in steps
    }


def machine() -> str:
    """The processor, core count and library versions, in one line."""
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    processor = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    return (
        f"{processor}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, Pillow {PIL.__version__}"
    )


def costs(
    runs: int, steps: dict[str, Callable[[bytes], object]] = STEPS
) -> list[tuple[Case, int, dict[str, tuple[float, float]]]]:
    """Each case with its mean PNG size in bytes and each step's median CPU and wall ms."""
    results = []
    for case in CASES:
        pictures = [canvas_png(digit, case) for digit in DIGIT_PATHS]
        size = round(sum(map(len, pictures)) / len(pictures))
        results.append((case, size, median_ms(pictures, runs, steps)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Print the per-picture cost table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300, help="timed runs per picture kind")
    arguments = parser.parse_args(argv)
    if arguments.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    print(f"machine: {machine()}")
    print(f"median of {arguments.runs} runs per kind, ms per picture, one process")
    print("decode: bytes to a decoded picture; total: bytes to model input (the server's prepare)")
    print(
        f"{'picture':<34} {'PNG bytes':>9} {'decode CPU':>11} {'total CPU':>10} {'total wall':>11}"
    )
    for case, size, milliseconds in costs(arguments.runs):
        decode, _ = milliseconds["decode"]
        total, total_wall = milliseconds["total"]
        print(f"{case.name:<34} {size:>9} {decode:>11.2f} {total:>10.2f} {total_wall:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
