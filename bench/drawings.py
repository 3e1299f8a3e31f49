"""The recorded drawings: what the page sent on /ws while digits were drawn on it.

Owns the fixture `bench/fixtures/page-ink.json` (written by `python -m bench.record`): per
drawing, the device it was drawn on, the digit, the canvas size, every message the page sent
(without its seq) with its send time relative to the drawing's first message, and the size
of the PNG the page's `pad.toBlob()` makes of the canvas after each message. Also owns
turning those messages back into wire frames with a fresh seq per connection (pre-encoded, so
a drawer pays one concatenation per message), the ink after each message (for the picture
mode and the ceiling), and slowing a drawing to fewer updates a second.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURE_PATH = Path(__file__).resolve().parent / "fixtures" / "page-ink.json"
SEQ_MARK = '"seq":-1'

Point = tuple[float, float]


@dataclass(frozen=True)
class Update:
    """One message of a drawing, pre-encoded around its seq."""

    at_s: float  # Send time since the drawing's first message.
    kind: str  # "ink", "strokes", "undo" or "clear".
    message: dict[str, Any]  # Without "type" and "seq".
    prefix: bytes
    suffix: bytes

    def encode(self, seq: int) -> bytes:
        """The text frame (UTF-8) with this seq."""
        return self.prefix + str(seq).encode() + self.suffix


@dataclass(frozen=True)
class Drawing:
    """One digit as the page streamed it."""

    device: str
    digit: int
    width: int
    height: int
    updates: tuple[Update, ...]
    page_png_bytes: tuple[int, ...]  # The page's PNG of the canvas after each update.
    # What it reads as: the digit, or the number when recorded digits were put side by side.
    text: str = ""

    @property
    def duration_s(self) -> float:
        return self.updates[-1].at_s

    @property
    def expected(self) -> str:
        """The right reading of the whole drawing."""
        return self.text or str(self.digit)


def make_update(at_s: float, kind: str, message: dict[str, Any]) -> Update:
    """Pre-encode a message the way the page does: `{"type", "seq", ...}`, compact JSON."""
    text = json.dumps({"type": kind, "seq": -1, **message}, separators=(",", ":"))
    prefix, _, suffix = text.partition(SEQ_MARK)
    return Update(at_s, kind, message, (prefix + '"seq":').encode(), suffix.encode())


def load_drawings(path: Path = FIXTURE_PATH) -> list[Drawing]:
    """The drawings of a fixture, in the order they were recorded."""
    fixture = json.loads(path.read_text())
    drawings = []
    for entry in fixture["drawings"]:
        updates = []
        for at_ms, message in entry["messages"]:
            body = {key: value for key, value in message.items() if key not in ("type", "seq")}
            updates.append(make_update(at_ms / 1000.0, message["type"], body))
        width, height = entry["canvas"]
        drawings.append(
            Drawing(
                device=entry["device"],
                digit=int(entry["digit"]),
                width=width,
                height=height,
                updates=tuple(updates),
                page_png_bytes=tuple(entry.get("page_png_bytes", ())),
            )
        )
    return drawings


def socket_query(path: Path = FIXTURE_PATH) -> str:
    """The query string the page put on its /ws URL (e.g. `include_input=1`)."""
    return str(json.loads(path.read_text()).get("socket_query", ""))


@dataclass
class Ink:
    """The server's view of one connection's drawing, updated message by message."""

    width: int = 0
    height: int = 0
    line_width: float = 1.0
    strokes: list[list[Point]] | None = None

    def apply(self, kind: str, message: dict[str, Any]) -> None:
        """Apply one message as PROTOCOL.md's "Ink" section says."""
        strokes = self.strokes if self.strokes is not None else []
        if kind in ("ink", "strokes"):
            width, height = int(message["width"]), int(message["height"])
            if strokes and (width, height) != (self.width, self.height):
                scale_x, scale_y = width / self.width, height / self.height
                strokes = [[(x * scale_x, y * scale_y) for x, y in stroke] for stroke in strokes]
            self.width, self.height = width, height
            self.line_width = float(message["line_width"])
        if kind == "ink":
            points = [(float(x), float(y)) for x, y in message["points"]]
            if message["stroke"] == len(strokes):
                strokes.append(points)
            else:
                strokes[message["stroke"]].extend(points)
        elif kind == "strokes":
            strokes = [
                [(float(x), float(y)) for x, y, *_ in stroke] for stroke in message["strokes"]
            ]
        elif kind == "undo":
            strokes = strokes[:-1]
        elif kind == "clear":
            strokes = []
        self.strokes = strokes

    def snapshot(self) -> tuple[int, int, float, tuple[tuple[Point, ...], ...]]:
        """Width, height, line width and a frozen copy of the strokes."""
        strokes = self.strokes or []
        return self.width, self.height, self.line_width, tuple(tuple(s) for s in strokes)


def ink_states(
    drawing: Drawing,
) -> Iterator[tuple[int, int, float, tuple[tuple[Point, ...], ...]]]:
    """The drawing's ink after each of its updates (a leading clear starts from nothing)."""
    ink = Ink(width=drawing.width, height=drawing.height)
    for update in drawing.updates:
        ink.apply(update.kind, update.message)
        yield ink.snapshot()


def slowed(drawing: Drawing, factor: int) -> Drawing:
    """The same drawing with `factor` consecutive appends to a stroke merged into one update.

    The pen moves as fast as recorded; the page would just send every `factor`-th update, so
    a 20-updates-a-second recording becomes a 10-a-second one with `factor` 2.
    """
    merged: list[Update] = []
    run = 0  # How many recorded updates the last merged one holds.
    for update in drawing.updates:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and run < factor
            and update.kind == previous.kind == "ink"
            and update.message["stroke"] == previous.message["stroke"]
            and update.message["width"] == previous.message["width"]
            and update.message["height"] == previous.message["height"]
        ):
            points = previous.message["points"] + update.message["points"]
            merged[-1] = make_update(update.at_s, "ink", {**update.message, "points": points})
            run += 1
        else:
            merged.append(update)
            run = 1
    return Drawing(
        drawing.device, drawing.digit, drawing.width, drawing.height, tuple(merged), (),
        drawing.text,
    )


# Numbers made of recorded digits: each digit shrunk to this share of its canvas, one placed
# every PLACE_SHARE of a digit canvas's width, after a pause as a person moves the pen on.
NUMBER_SCALE = 0.6
PLACE_SHARE = 0.5
BETWEEN_DIGITS_S = 0.3


def as_numbers(drawings: Sequence[Drawing], length: int, seed: int) -> list[Drawing]:
    """Numbers of `length` digits, each made of recorded drawings of one device side by side.

    Every update keeps its recorded timing and points (shrunk and moved right onto a wide
    canvas, as the page's wide drawing area gets them); the number is written digit after
    digit, so the live path sees what a person writing "2047" sends.
    """
    generator = random.Random(seed)
    numbers = []
    for device in sorted({drawing.device for drawing in drawings}):
        own = [drawing for drawing in drawings if drawing.device == device]
        for _ in range(len(own)):
            chosen = generator.sample(own, min(length, len(own)))
            numbers.append(_side_by_side(chosen))
    return numbers


def _side_by_side(digits: Sequence[Drawing]) -> Drawing:
    """Recorded digits written one after another on one wide canvas."""
    first = digits[0]
    cell = first.width * PLACE_SHARE
    width = round(cell * len(digits) + first.width * (NUMBER_SCALE - PLACE_SHARE) + cell / 2)
    height = round(first.height * NUMBER_SCALE + first.height * 0.2)
    updates: list[Update] = []
    strokes = 0
    start_s = 0.0
    for place, digit in enumerate(digits):
        scale = NUMBER_SCALE * first.width / digit.width
        left, top = cell / 4 + place * cell, first.height * 0.1
        added = 0
        for update in digit.updates:
            if update.kind != "ink":
                continue
            message = update.message
            points = [[round(left + x * scale, 1), round(top + y * scale, 1)]
                      for x, y in message["points"]]
            body = {
                "width": width,
                "height": height,
                "line_width": round(message["line_width"] * scale, 2),
                "stroke": strokes + message["stroke"],
                "points": points,
            }
            added = max(added, message["stroke"] + 1)
            updates.append(make_update(start_s + update.at_s, "ink", body))
        strokes += added
        start_s = updates[-1].at_s + BETWEEN_DIGITS_S
    text = "".join(str(digit.digit) for digit in digits)
    return Drawing(first.device, first.digit, width, height, tuple(updates), (), text)


def describe(drawings: Sequence[Drawing]) -> dict[str, Any]:
    """Counts and rates of the recorded traffic, for the results' method section."""
    updates = [update for drawing in drawings for update in drawing.updates]
    moving = [
        len(drawing.updates) / drawing.duration_s for drawing in drawings if drawing.duration_s > 0
    ]
    sizes = [len(update.encode(100)) for update in updates]
    gaps = [
        (later.at_s - earlier.at_s) * 1000.0
        for drawing in drawings
        for earlier, later in zip(drawing.updates, drawing.updates[1:], strict=False)
        if earlier.kind == later.kind == "ink"
        and earlier.message["stroke"] == later.message["stroke"]
    ]
    return {
        "drawings": len(drawings),
        "devices": sorted({drawing.device for drawing in drawings}),
        "digits": sorted({drawing.digit for drawing in drawings}),
        "updates": len(updates),
        "updates_by_type": {
            kind: sum(update.kind == kind for update in updates)
            for kind in sorted({update.kind for update in updates})
        },
        "mean_drawing_s": round(sum(d.duration_s for d in drawings) / len(drawings), 2),
        "mean_updates_per_s_per_drawing": round(sum(moving) / max(len(moving), 1), 1),
        "median_ms_between_updates_of_a_stroke": round(statistics.median(gaps), 1),
        "mean_message_bytes": round(sum(sizes) / len(sizes), 1),
        "max_message_bytes": max(sizes),
    }
