"""The recorded drawings: what the page sent on /ws while digits and numbers were drawn on it.

Owns the fixture `bench/fixtures/page-ink.json` (written by `python -m bench.record`): per
drawing, the device it was drawn on, the digit or the number drawn, the canvas size, every
message the page sent (without its seq) with its send time relative to the drawing's first
message, and the size of the PNG the page's `pad.toBlob()` makes of the canvas after each
message. Also owns turning those messages back into wire frames with a fresh seq per
connection (pre-encoded, so a drawer pays one concatenation per message), the ink after each
message (for the picture mode and the ceiling), and slowing a drawing to fewer updates a
second.
"""

from __future__ import annotations

import json
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
    """One digit or number as the page streamed it."""

    device: str
    text: str  # What was drawn: one digit ("7") or a number ("2047").
    width: int
    height: int
    updates: tuple[Update, ...]
    page_png_bytes: tuple[int, ...]  # The page's PNG of the canvas after each update.

    @property
    def duration_s(self) -> float:
        return self.updates[-1].at_s

    @property
    def digit(self) -> int:
        """The digit drawn, for a drawing of one digit."""
        if len(self.text) != 1:
            raise ValueError(f"{self.text} is a number, not a digit")
        return int(self.text)

    @property
    def expected(self) -> str:
        """The right reading of the whole drawing."""
        return self.text


def make_update(at_s: float, kind: str, message: dict[str, Any]) -> Update:
    """Pre-encode a message the way the page does: `{"type", "seq", ...}`, compact JSON."""
    text = json.dumps({"type": kind, "seq": -1, **message}, separators=(",", ":"))
    prefix, _, suffix = text.partition(SEQ_MARK)
    return Update(at_s, kind, message, (prefix + '"seq":').encode(), suffix.encode())


def load_drawings(path: Path = FIXTURE_PATH, numbers: bool = False) -> list[Drawing]:
    """The single digits of a fixture, or with `numbers` its numbers, in recorded order."""
    fixture = json.loads(path.read_text())
    drawings = []
    for entry in fixture["drawings"]:
        if ("number" in entry) != numbers:
            continue
        updates = []
        for at_ms, message in entry["messages"]:
            body = {key: value for key, value in message.items() if key not in ("type", "seq")}
            updates.append(make_update(at_ms / 1000.0, message["type"], body))
        width, height = entry["canvas"]
        drawings.append(
            Drawing(
                device=entry["device"],
                text=str(entry["number"]) if numbers else str(int(entry["digit"])),
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
    return Drawing(drawing.device, drawing.text, drawing.width, drawing.height, tuple(merged), ())


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
        "drawn": sorted({drawing.text for drawing in drawings}, key=lambda text: (len(text), text)),
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
