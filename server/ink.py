"""The drawing one WebSocket connection keeps: its ink, edited stroke by stroke.

Owns the v2 ink semantics of PROTOCOL.md: `ink` appends points to the last stroke or starts
the next one, `undo` removes the last stroke, `clear` removes them all, a v1 `strokes`
message replaces the drawing, and a new canvas size scales the ink already there (a phone
turned round). Points are kept as packed 32-bit floats, so even a thousand connections at the
point limit hold a few hundred megabytes, not gigabytes of Python tuples.

An edit that would break a rule (a stroke index out of turn, more points than the limit)
raises `ProtocolError` and leaves the drawing as it was.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from itertools import chain

from server.protocol import (
    InkClear,
    InkEdit,
    InkPoints,
    InkUndo,
    Point,
    ProtocolError,
    StrokesSnapshot,
)


@dataclass(frozen=True)
class PackedInk:
    """A drawing as it is sent to a decode process: every point as packed float32 x, y pairs.

    Pickling this costs one copy of its bytes, where tuples of points cost an object each.
    """

    width: int
    height: int
    line_width: float
    points: bytes
    # How many points each stroke holds, in order.
    lengths: tuple[int, ...]
    # Changes whenever strokes already drawn change (undo, clear, a new drawing, a new
    # canvas size): within one generation, a stroke of the same index and length is the same.
    generation: int = 0


class Drawing:
    """The strokes of one connection's drawing and the canvas they lie on."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.width = 1
        self.height = 1
        self.line_width = 1.0
        # Each stroke is x0, y0, x1, y1, ... as 32-bit floats.
        self._strokes: list[array[float]] = []
        self._points = 0
        self._generation = 0

    @property
    def points(self) -> int:
        """How many points the drawing holds."""
        return self._points

    @property
    def strokes(self) -> int:
        """How many strokes the drawing holds."""
        return len(self._strokes)

    def apply(self, edit: InkEdit) -> None:
        """Apply an ink, undo or clear message; raises ProtocolError and changes nothing."""
        if isinstance(edit, InkUndo):
            if self._strokes:
                self._points -= len(self._strokes.pop()) // 2
                self._generation += 1
        elif isinstance(edit, InkClear):
            self._strokes.clear()
            self._points = 0
            self._generation += 1
        else:
            self._append(edit)

    def replace(self, snapshot: StrokesSnapshot) -> None:
        """Make a v1 strokes message the whole drawing (the parser has checked its limit)."""
        self.width, self.height, self.line_width = (
            snapshot.width,
            snapshot.height,
            snapshot.line_width,
        )
        self._strokes = [_pack(stroke) for stroke in snapshot.strokes]
        self._points = sum(len(stroke) for stroke in snapshot.strokes)
        self._generation += 1

    def packed(self) -> PackedInk:
        """The drawing as it is now, packed for a decode process."""
        return PackedInk(
            self.width,
            self.height,
            self.line_width,
            b"".join(stroke.tobytes() for stroke in self._strokes),
            tuple(len(stroke) // 2 for stroke in self._strokes),
            self._generation,
        )

    def _append(self, edit: InkPoints) -> None:
        count = len(self._strokes)
        if edit.stroke not in (count, count - 1):
            expected = f"{count - 1} (continue) or {count} (new)" if count else "0"
            raise ProtocolError(
                "bad_message", f"'stroke' must be {expected}, got {edit.stroke}", edit.seq
            )
        total = self._points + len(edit.points)
        if total > self.max_points:
            raise ProtocolError(
                "too_large",
                f"the drawing would hold {total} points, over the limit of {self.max_points}",
                edit.seq,
            )
        if (edit.width, edit.height) != (self.width, self.height) and self._strokes:
            self._scale(edit.width / self.width, edit.height / self.height)
        self.width, self.height, self.line_width = edit.width, edit.height, edit.line_width
        if edit.stroke == count:
            self._strokes.append(array("f"))
        self._strokes[edit.stroke].extend(chain.from_iterable(edit.points))
        self._points = total

    def _scale(self, scale_x: float, scale_y: float) -> None:
        self._generation += 1
        for index, stroke in enumerate(self._strokes):
            scaled = array("f", stroke)
            scaled[0::2] = array("f", (x * scale_x for x in stroke[0::2]))
            scaled[1::2] = array("f", (y * scale_y for y in stroke[1::2]))
            self._strokes[index] = scaled


def _pack(points: tuple[Point, ...]) -> array[float]:
    return array("f", chain.from_iterable(points))
