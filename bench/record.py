"""`make bench-record`: record what the page sends on /ws while digits and numbers are drawn.

Run:  .venv/bin/python -m bench.record [--out bench/fixtures/page-ink.json]

Opens the page in Debian's headless Chromium against a real `python -m server` and draws on
it the way tests/test_page.py and tests/test_page_numbers.py do: every digit with the mouse in
an 800-px-wide desktop window (a 776x448 CSS px pad, as wide as the window) and some with a
finger on an emulated Pixel 7 (388x388), each single digit in the square in the middle of the
pad; then numbers of 3 to 5 digits, each digit in its own place left to right, the way a
person writes a number across the pad. The pointer moves in small steps with a pause between
samples, lifts between strokes and between digits, and the drawing is cleared with Escape
before the next one. Every text frame the page sends (`page.on("websocket")` -> `framesent`)
is kept with its send time, split into drawings at each clear. For each message it also
records the size of the PNG the page's own `DrawingPad.toBlob()` makes of the canvas at that
point, which the picture mode's frames are checked against. Nothing is written unless the
server's last answer to every drawing reads what was drawn (the digit, or the number's text).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from playwright.sync_api import (
    FloatRect,
    Page,
    Playwright,
    ViewportSize,
    WebSocket,
    sync_playwright,
)

from bench import measure
from bench.drawings import FIXTURE_PATH, Ink
from bench.load import reading
from bench.server_process import ROOT, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As tests/test_page.py launches it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP_VIEWPORT: ViewportSize = {"width": 800, "height": 640}
PHONE = "Pixel 7"
DESKTOP_DIGITS = list(range(10))
PHONE_DIGITS = [2, 4, 7, 8]
DESKTOP_NUMBERS = ["2047", "315", "98610", "4726", "5839", "60172"]
PHONE_NUMBERS = ["381", "5294", "706"]
# A person's pen moves in small steps, one pointer sample a frame (60 Hz): a 50th of the
# pad's shorter side a sample (9 CSS px on the desktop pad, about 540 px/s), so a 7 takes
# about a second. Chromium dispatches a synthetic pointer event per frame anyway; the pause
# only keeps a fast machine from going faster.
STEP_FRACTION = 0.02
SAMPLE_S = 1 / 60
# Lifting the pen and moving it to the next stroke's start, or on to the next digit's place.
BETWEEN_STROKES_MS = 250
BETWEEN_DIGITS_MS = 400
# Looking at the answer before clearing, and from the clear to the next pen-down.
LOOK_MS = 400
CLEAR_TO_DRAW_MS = 300
# Longer than the page's 50 ms throttle: no message is still on its way after this.
SETTLE_MS = 150
ANSWER_TIMEOUT_S = 10.0
# A number's digits are this share of the pad's height tall, unless the number would then
# take more than NUMBER_WIDTH_SHARE of its width; about GAP_SHARE of a digit's height lies
# between two. Each digit is up to HAND_VARIATION bigger or smaller, higher or lower than
# the others, as a hand writes them.
NUMBER_HEIGHT_SHARE = 0.5
NUMBER_WIDTH_SHARE = 0.9
GAP_SHARE = 0.3
HAND_VARIATION = 0.06

Point = tuple[float, float]
Stroke = list[Point]


# Digits as a person draws them, stroke by stroke, in fractions of a square: about 0.4 of it
# wide and DIGIT_HEIGHT of it tall, in its middle. Paths are sampled finely here, and
# resampled at the pen's pace where they are placed on the pad.

SHAPE_STEP = 0.005
DIGIT_HEIGHT = 0.6


def polyline(*vertices: Point) -> Stroke:
    """The vertices joined by straight lines, sampled every SHAPE_STEP."""
    points = [vertices[0]]
    for start, end in itertools.pairwise(vertices):
        steps = max(1, math.ceil(math.dist(start, end) / SHAPE_STEP))
        points += [
            (start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
            for i in range(1, steps + 1)
        ]
    return points


def arc(centre: Point, radii: Point, from_degrees: float, to_degrees: float) -> Stroke:
    """An elliptic arc (y down: 90 degrees is the bottom), sampled every SHAPE_STEP."""
    sweep = math.radians(to_degrees - from_degrees)
    steps = max(1, math.ceil(abs(sweep) * max(radii) / SHAPE_STEP))
    start = math.radians(from_degrees)
    return [
        (
            centre[0] + radii[0] * math.cos(start + sweep * i / steps),
            centre[1] + radii[1] * math.sin(start + sweep * i / steps),
        )
        for i in range(steps + 1)
    ]


def figure_eight() -> Stroke:
    """One stroke: the top loop, across the middle, the bottom loop and back up."""

    def at(turn: float) -> Point:
        angle = 2 * math.pi * 1.03 * turn
        return 0.5 + 0.15 * math.sin(2 * angle), 0.5 - 0.3 * math.cos(angle)

    return [at(i / 1000) for i in range(1001)]


DIGITS: dict[int, list[Stroke]] = {
    0: [arc((0.5, 0.5), (0.2, 0.29), -90, -90 - 1.08 * 360)],
    1: [polyline((0.53, 0.2), (0.5, 0.5), (0.48, 0.8))],
    2: [arc((0.5, 0.36), (0.17, 0.14), 190, 400) + polyline((0.6, 0.47), (0.3, 0.8), (0.72, 0.8))],
    3: [arc((0.5, 0.34), (0.16, 0.13), 200, 450) + arc((0.5, 0.63), (0.19, 0.16), 270, 500)],
    4: [polyline((0.56, 0.2), (0.3, 0.6), (0.74, 0.6)), polyline((0.6, 0.38), (0.6, 0.82))],
    5: [
        polyline((0.38, 0.22), (0.36, 0.46)) + arc((0.5, 0.6), (0.18, 0.16), 235, 500),
        polyline((0.38, 0.22), (0.68, 0.21)),
    ],
    6: [
        polyline((0.62, 0.18), (0.45, 0.35), (0.34, 0.62))
        + arc((0.5, 0.64), (0.16, 0.15), 180, -175)
    ],
    7: [polyline((0.3, 0.25), (0.7, 0.25), (0.56, 0.5), (0.45, 0.8))],
    8: [figure_eight()],
    9: [arc((0.5, 0.36), (0.16, 0.14), 0, -365) + polyline((0.66, 0.37), (0.6, 0.8))],
}


def bounds(strokes: list[Stroke]) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) of the strokes' points."""
    xs = [x for stroke in strokes for x, _ in stroke]
    ys = [y for stroke in strokes for _, y in stroke]
    return min(xs), min(ys), max(xs), max(ys)


def resampled(points: Stroke, step: float) -> Stroke:
    """The path's points every `step` of its length, as a steadily moving pen samples it."""
    result = [points[0]]
    since_sample = 0.0
    for start, end in itertools.pairwise(points):
        length = math.dist(start, end)
        position = 0.0
        while since_sample + length - position >= step:
            position += step - since_sample
            share = position / length
            result.append(
                (start[0] + (end[0] - start[0]) * share, start[1] + (end[1] - start[1]) * share)
            )
            since_sample = 0.0
        since_sample += length - position
    if since_sample > step / 4:
        result.append(points[-1])
    return result


def placed(shape: list[Stroke], scale: float, left: float, top: float, step: float) -> list[Stroke]:
    """A shape scaled and moved onto the pad (pad pixels), sampled at the pen's pace."""
    return [
        resampled([(left + x * scale, top + y * scale) for x, y in stroke], step)
        for stroke in shape
    ]


def digit_on_pad(digit: int, width: int, height: int) -> list[Stroke]:
    """A single digit's strokes in pad pixels, in the square in the middle of the pad."""
    side = min(width, height)
    step = STEP_FRACTION * side
    return placed(DIGITS[digit], side, (width - side) / 2, (height - side) / 2, step)


def number_on_pad(text: str, width: int, height: int) -> list[list[Stroke]]:
    """Each digit's strokes in pad pixels, written left to right across the pad.

    Each digit's own width says where the next one starts (a 1 takes little room), and the
    hand's variation is seeded by the number, so a recording draws it the same way again.
    """
    hand = random.Random(text)
    shapes = [DIGITS[int(character)] for character in text]
    boxes = [bounds(shape) for shape in shapes]
    sizes = [1 + hand.uniform(-HAND_VARIATION, HAND_VARIATION) for _ in text]
    lifts = [hand.uniform(-HAND_VARIATION, HAND_VARIATION) for _ in text]
    gaps = [GAP_SHARE * (1 + hand.uniform(-0.2, 0.2)) for _ in text[1:]]
    # Widths and gaps in digit heights: the number is `across` digit heights wide.
    widths = [
        (box[2] - box[0]) * size / DIGIT_HEIGHT for box, size in zip(boxes, sizes, strict=True)
    ]
    across = sum(widths) + sum(gaps)
    digit_height = min(NUMBER_HEIGHT_SHARE * height, NUMBER_WIDTH_SHARE * width / across)
    step = STEP_FRACTION * min(width, height)
    left = (width - across * digit_height) / 2
    digits = []
    for shape, box, size, lift, own_width, gap in zip(
        shapes, boxes, sizes, lifts, widths, [*gaps, 0.0], strict=True
    ):
        scale = size * digit_height / DIGIT_HEIGHT
        top = height / 2 + lift * digit_height - (box[1] + box[3]) / 2 * scale
        digits.append(placed(shape, scale, left - box[0] * scale, top, step))
        left += (own_width + gap) * digit_height
    return digits


def drawn_on_pad(text: str, width: int, height: int) -> list[list[Stroke]]:
    """What to draw for a digit ("7") or a number ("2047"): each digit's strokes in pad pixels."""
    if len(text) == 1:
        return [digit_on_pad(int(text), width, height)]
    return number_on_pad(text, width, height)


# Watching the page's socket.


@dataclass
class Recording:
    """The text frames one page sent, with their send times, and how it read each answer."""

    sent: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    # Each answer's reading (the number's text, else the digit); None for an error.
    readings: list[str | None] = field(default_factory=list)
    binary_frames: int = 0
    query: str = ""

    def on_websocket(self, socket: WebSocket) -> None:
        self.query = socket.url.partition("?")[2]
        socket.on("framesent", self.on_sent)
        socket.on("framereceived", self.on_received)

    def on_sent(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.binary_frames += 1
            return
        self.sent.append((time.monotonic(), json.loads(payload)))

    def on_received(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            message = json.loads(payload)
            seq = message.get("seq")
            if message.get("type") in ("prediction", "error") and isinstance(seq, int):
                self.answered.append(seq)
                self.readings.append(
                    reading(message) if message["type"] == "prediction" else None
                )


def wait_until(page: Page, condition: Callable[[], bool], what: str) -> None:
    """Let the page run until the condition holds (its events reach us meanwhile)."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        page.wait_for_timeout(20)


def pad_box(page: Page) -> FloatRect:
    """Where the drawing pad is in the viewport (scrolled into view first, if it is not)."""
    pad = page.locator("canvas[data-role=pad]")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None
    return box


def pad_size(page: Page) -> tuple[int, int]:
    """The pad's size in whole CSS pixels, as the page reports it on the wire."""
    box = pad_box(page)
    return round(box["width"]), round(box["height"])


def in_viewport(box: FloatRect, point: Point) -> Point:
    """Viewport coordinates of a point in pad pixels."""
    return box["x"] + point[0], box["y"] + point[1]


def paced(page: Page, points: Stroke, move: Callable[[Point], None]) -> None:
    """Move through the points one sample period apart (later, if the browser is slower)."""
    started = time.monotonic()
    for number, point in enumerate(points, start=1):
        move(point)
        ahead_s = started + number * SAMPLE_S - time.monotonic()
        if ahead_s > 0.001:
            page.wait_for_timeout(ahead_s * 1000.0)


def mouse_stroke(page: Page, points: Stroke) -> None:
    """Draw one stroke (pad pixels) with the mouse."""
    box = pad_box(page)
    page.mouse.move(*in_viewport(box, points[0]))
    page.mouse.down()
    paced(page, points[1:], lambda point: page.mouse.move(*in_viewport(box, point)))
    page.mouse.up()


def touch_stroke(page: Page, points: Stroke) -> None:
    """Draw one stroke (pad pixels) with a finger (touch events through the DevTools protocol)."""
    session = page.context.new_cdp_session(page)
    box = pad_box(page)

    def touch(kind: str, point: Point | None) -> None:
        touch_points = []
        if point is not None:
            x, y = in_viewport(box, point)
            touch_points = [{"x": x, "y": y, "id": 1, "radiusX": 6, "radiusY": 6, "force": 0.5}]
        session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})

    touch("touchStart", points[0])
    paced(page, points[1:], lambda point: touch("touchMove", point))
    touch("touchEnd", None)
    session.detach()


def sent_more(recording: Recording, count: int) -> bool:
    """Whether the page has sent more than `count` messages."""
    return len(recording.sent) > count


def answered_all(recording: Recording) -> bool:
    """Whether the page's last message has its answer."""
    last = recording.sent[-1][1]["seq"] if recording.sent else None
    return last is not None and bool(recording.answered) and recording.answered[-1] >= last


def settle(page: Page, recording: Recording, what: str) -> None:
    """Wait until the page has sent its last message and has its answer."""
    while True:
        wait_until(page, lambda: answered_all(recording), f"the answer to the drawn {what}")
        sent = len(recording.sent)
        page.wait_for_timeout(SETTLE_MS)
        if len(recording.sent) == sent and answered_all(recording):
            return


def draw_all(
    page: Page, recording: Recording, texts: list[str], stroke: Callable[[Page, Stroke], None]
) -> list[tuple[str, int, int, str | None]]:
    """Draw each digit or number, clearing before the next.

    Returns, per drawing, what was drawn, the range of its messages and how the page's last
    answer to it reads.
    """
    wait_until(
        page,
        lambda: page.locator("[data-role=status]").get_attribute("data-state") == "live",
        "the socket",
    )
    width, height = pad_size(page)
    ranges = []
    for number, text in enumerate(texts):
        first = len(recording.sent)
        if number > 0:
            page.keyboard.press("Escape")
            wait_until(page, partial(sent_more, recording, first), "the clear message")
            page.wait_for_timeout(CLEAR_TO_DRAW_MS)
        for place, strokes in enumerate(drawn_on_pad(text, width, height)):
            if place > 0:
                page.wait_for_timeout(BETWEEN_DIGITS_MS)
            for index, points in enumerate(strokes):
                if index > 0:
                    page.wait_for_timeout(BETWEEN_STROKES_MS)
                stroke(page, points)
        settle(page, recording, text)
        ranges.append((text, first, len(recording.sent), recording.readings[-1]))
        page.wait_for_timeout(LOOK_MS)
    return ranges


# The page's own send times: WebSocket.send, wrapped before the page's scripts run.
SEND_TIMES_JS = """
(() => {
  const send = WebSocket.prototype.send;
  window.benchSendTimes = [];
  WebSocket.prototype.send = function (data) {
    window.benchSendTimes.push(performance.now());
    return send.call(this, data);
  };
})();
"""

PNG_SIZES_JS = """
async ({ states, width, height }) => {
  // The page's own pad draws the picture: DrawingPad.toBlob() at CSS-pixel size.
  const { DrawingPad } = await import(new URL("js/canvas.js", document.baseURI).href);
  const canvas = document.createElement("canvas");
  canvas.style.cssText =
    `position: fixed; left: 0; top: 0; width: ${width}px; height: ${height}px; visibility: hidden`;
  document.body.append(canvas);
  const pad = new DrawingPad(canvas);
  const sizes = [];
  for (const strokes of states) {
    pad.strokes = strokes.map((stroke) => stroke.map(([x, y]) => [x, y, 0]));
    sizes.push((await pad.toBlob()).size);
  }
  canvas.remove();
  return sizes;
}
"""


def page_png_sizes(
    page: Page, messages: list[dict[str, Any]], width: int, height: int
) -> list[int]:
    """The size of the page's PNG of the canvas after each message."""
    ink = Ink(width=width, height=height)
    states = []
    for message in messages:
        ink.apply(message["type"], message)
        states.append([[list(point) for point in stroke] for stroke in ink.strokes or []])
    sizes: list[int] = page.evaluate(
        PNG_SIZES_JS, {"states": states, "width": width, "height": height}
    )
    return sizes


def record_device(
    playwright: Playwright, url: str, device: str, texts: list[str]
) -> tuple[str, list[dict[str, Any]]]:
    """Draw `texts` (digits and numbers) on one page; returns the socket's query and drawings."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        if device == "desktop":
            context = browser.new_context(viewport=DESKTOP_VIEWPORT)
            stroke = mouse_stroke
            name = f"desktop {DESKTOP_VIEWPORT['width']}x{DESKTOP_VIEWPORT['height']}, mouse"
        else:
            context = browser.new_context(**playwright.devices[device])
            stroke = touch_stroke
            name = f"{device}, touch"
        context.add_init_script(SEND_TIMES_JS)
        page = context.new_page()
        recording = Recording()
        page.on("websocket", recording.on_websocket)
        page.goto(url)
        ranges = draw_all(page, recording, texts, stroke)
        if recording.binary_frames:
            raise RuntimeError(
                f"the page sent {recording.binary_frames} binary frames: it sends pictures, not ink"
            )
        send_times_ms: list[float] = page.evaluate("window.benchSendTimes")
        if len(send_times_ms) != len(recording.sent):
            raise RuntimeError(
                f"{len(send_times_ms)} sends in the page, {len(recording.sent)} frames seen"
            )
        drawings = []
        for text, first, end, answer in ranges:
            sent = [
                (at_ms / 1000.0, message)
                for at_ms, (_, message) in zip(
                    send_times_ms[first:end], recording.sent[first:end], strict=True
                )
            ]
            start = sent[0][0]
            messages = [{k: v for k, v in message.items() if k != "seq"} for _, message in sent]
            canvas = next(message for message in messages if "width" in message)
            width, height = int(canvas["width"]), int(canvas["height"])
            drawn: dict[str, Any] = {"digit": int(text)} if len(text) == 1 else {"number": text}
            drawings.append(
                {
                    "device": name,
                    **drawn,
                    "answer": answer,
                    "canvas": [width, height],
                    "messages": [
                        [round((at - start) * 1000.0, 1), message]
                        for (at, _), message in zip(sent, messages, strict=True)
                    ],
                    "page_png_bytes": page_png_sizes(page, messages, width, height),
                }
            )
        context.close()
        return recording.query, drawings
    finally:
        browser.close()


def expected(drawing: dict[str, Any]) -> str:
    """What a recorded drawing should read: its digit, or its number."""
    return str(drawing["digit"]) if "digit" in drawing else str(drawing["number"])


def dump_fixture(fixture: dict[str, Any]) -> str:
    """JSON with one message a line: small, and readable in a diff."""
    lines = ["{"]
    for key, value in fixture.items():
        if key != "drawings":
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "drawings": [')
    for number, drawing in enumerate(fixture["drawings"]):
        lines.append("    {")
        for key, value in drawing.items():
            if key != "messages":
                lines.append(f"      {json.dumps(key)}: {json.dumps(value)},")
        lines.append('      "messages": [')
        messages = [
            "        " + json.dumps(entry, separators=(",", ":")) for entry in drawing["messages"]
        ]
        lines.append(",\n".join(messages))
        lines.append("      ]")
        lines.append("    }" + ("," if number < len(fixture["drawings"]) - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Record the fixture; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.record", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=FIXTURE_PATH)
    arguments = parser.parse_args(argv)

    drawings: list[dict[str, Any]] = []
    query = ""
    plan = (
        ("desktop", [str(digit) for digit in DESKTOP_DIGITS] + DESKTOP_NUMBERS),
        (PHONE, [str(digit) for digit in PHONE_DIGITS] + PHONE_NUMBERS),
    )
    with tempfile.TemporaryDirectory() as logs, sync_playwright() as playwright:
        server = start_server(Path(logs))
        try:
            for device, texts in plan:
                print(f"drawing {' '.join(texts)} on {device} ...", flush=True)
                query, recorded = record_device(playwright, server.http_url + "/", device, texts)
                drawings += recorded
        except RuntimeError as error:
            print(f"python -m bench.record: {error}", file=sys.stderr)
            return 1
        finally:
            server.stop()
        browser_version = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        version = browser_version.version
        browser_version.close()

    misread = [drawing for drawing in drawings if drawing["answer"] != expected(drawing)]
    for drawing in misread:
        print(
            f"python -m bench.record: {expected(drawing)} drawn on {drawing['device']} "
            f"read as {drawing['answer']}",
            file=sys.stderr,
        )
    if misread:
        print(f"python -m bench.record: {len(misread)} misread, nothing written", file=sys.stderr)
        return 1

    fixture = {
        "about": "What the page sent on /ws while python -m bench.record drew these digits and "
        "numbers on it; times in ms since each drawing's first message; digit or number: what "
        "was drawn; answer: how the server's last answer to the drawing reads (its number's "
        "text), as the page got it; page_png_bytes: the size of the "
        "page's DrawingPad.toBlob() PNG of the canvas after each message.",
        "recorded_with": {
            "chromium": version,
            "page": measure.commit(ROOT, "web"),
            "date": time.strftime("%Y-%m-%d"),
        },
        "socket_query": query,
        "drawings": drawings,
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(dump_fixture(fixture))
    messages = sum(len(drawing["messages"]) for drawing in drawings)
    numbers = sum("number" in drawing for drawing in drawings)
    print(
        f"wrote {arguments.out}: {len(drawings) - numbers} digits and {numbers} numbers, "
        f"{messages} messages, {arguments.out.stat().st_size / 1024:.1f} kB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
