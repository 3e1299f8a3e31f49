"""Stroke recordings, and replaying them the way the page sends a drawing.

A recording is JSON `{"width": int, "height": int, "line_width": number, "strokes":
[[[x, y, t_ms], ...], ...]}`, where `t_ms` is the time since the recording started. The page
sends the whole drawing so far at most every 50 ms while the pen moves, and once more at
each pen-up; `replay_schedule` works out those messages and when each one goes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import RecordingError

# The page's throttle: one picture at most this often while the pen moves.
SEND_INTERVAL_MS = 50.0

Point = tuple[float, float]


@dataclass(frozen=True)
class TimedPoint:
    """A pen position and when it was reached (ms since the recording started)."""

    x: float
    y: float
    t_ms: float


@dataclass(frozen=True)
class Recording:
    """A drawing with its timing, on a width x height canvas."""

    width: int
    height: int
    line_width: float
    strokes: tuple[tuple[TimedPoint, ...], ...]

    @property
    def duration_ms(self) -> float:
        """When the pen last lifted (0 for an empty drawing)."""
        return self.strokes[-1][-1].t_ms if self.strokes else 0.0


@dataclass(frozen=True)
class ScheduledSend:
    """One strokes message of a replay: the drawing so far, and when it goes out."""

    at_ms: float
    strokes: tuple[tuple[Point, ...], ...]
    pen_up: bool


def load_recording(path: str | os.PathLike[str]) -> Recording:
    """Read and check a recording file; raises `RecordingError` naming what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise RecordingError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise RecordingError(f"{path} is not UTF-8 JSON") from None
    try:
        body = json.loads(text)
    except ValueError as error:
        raise RecordingError(f"{path} is not JSON: {error}") from None
    try:
        return parse_recording(body)
    except RecordingError as error:
        raise RecordingError(f"{path}: {error}") from None


def parse_recording(body: Any) -> Recording:
    """A recording from its decoded JSON; raises `RecordingError` naming what is wrong."""
    if not isinstance(body, dict):
        raise RecordingError("a recording is a JSON object")
    width = _positive(body, "width", integer=True)
    height = _positive(body, "height", integer=True)
    line_width = _positive(body, "line_width", integer=False)
    strokes = body.get("strokes")
    if not isinstance(strokes, list):
        raise RecordingError("'strokes' must be a list of strokes")
    parsed: list[tuple[TimedPoint, ...]] = []
    previous_t = 0.0
    for stroke_index, stroke in enumerate(strokes):
        if not isinstance(stroke, list) or not stroke:
            raise RecordingError(f"stroke {stroke_index} must be a non-empty list of points")
        points: list[TimedPoint] = []
        for point in stroke:
            if not (
                isinstance(point, list)
                and len(point) == 3
                and all(_is_number(value) for value in point)
            ):
                raise RecordingError(
                    f"stroke {stroke_index}: every point must be [x, y, t_ms], got {point!r}"
                )
            x, y, t_ms = (float(value) for value in point)
            if t_ms < previous_t:
                raise RecordingError(f"stroke {stroke_index}: time goes backwards at {t_ms:g} ms")
            previous_t = t_ms
            points.append(TimedPoint(x, y, t_ms))
        parsed.append(tuple(points))
    return Recording(int(width), int(height), line_width, tuple(parsed))


def replay_schedule(
    recording: Recording, interval_ms: float = SEND_INTERVAL_MS
) -> list[ScheduledSend]:
    """The strokes messages a browser would send while this drawing is made.

    As each point arrives, the drawing so far goes out if `interval_ms` have passed since
    the last message, and always at the last point of a stroke (the pen-up). An empty
    recording still sends one blank drawing, so there is an answer to wait for.
    """
    if not recording.strokes:
        return [ScheduledSend(0.0, (), pen_up=True)]
    sends: list[ScheduledSend] = []
    finished: list[tuple[Point, ...]] = []
    last_sent_ms = -math.inf
    for stroke in recording.strokes:
        current: list[Point] = []
        for index, point in enumerate(stroke):
            current.append((point.x, point.y))
            pen_up = index == len(stroke) - 1
            if pen_up or point.t_ms - last_sent_ms >= interval_ms:
                sends.append(ScheduledSend(point.t_ms, (*finished, tuple(current)), pen_up))
                last_sent_ms = point.t_ms
        finished.append(tuple(current))
    return sends


def _positive(body: dict[str, Any], key: str, *, integer: bool) -> float:
    """A positive number (an integer if asked) from the recording's top level."""
    value = body.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise RecordingError(f"'{key}' must be a positive {'integer' if integer else 'number'}")
    return float(value)


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)
