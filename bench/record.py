"""`make bench-record`: record what the page sends on /ws while digits are drawn on it.

Run:  .venv/bin/python -m bench.record [--out bench/fixtures/page-ink.json]

Opens the page in Debian's headless Chromium against a real `python -m server`, draws every
digit with the mouse in an 800-px-wide desktop window (a 440x440 CSS px canvas) and some with
a finger on an emulated Pixel 7, the way tests/test_page.py draws: the pointer moves in small
steps with a pause between samples, lifts between strokes, and the drawing is cleared with
Escape before the next one. Every text frame the page sends (`page.on("websocket")` ->
`framesent`) is kept with its send time, split into drawings at each clear. For each message
it also records the size of the PNG the page's own `DrawingPad.toBlob()` makes of the canvas
at that point, which the picture mode's frames are checked against.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Playwright, WebSocket, sync_playwright

from bench import measure
from bench.drawings import FIXTURE_PATH, Ink
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
DESKTOP_VIEWPORT = {"width": 800, "height": 640}
PHONE = "Pixel 7"
# A person's pen moves in small steps, one pointer sample a frame (60 Hz): 9 CSS px a sample
# on the desktop canvas, about 530 px/s, so a 7 takes about a second. Chromium dispatches a
# synthetic pointer event per frame anyway; the pause only keeps a fast machine from going
# faster.
STEP_FRACTION = 0.02
SAMPLE_S = 1 / 60
# Lifting the pen and moving it to the next stroke's start.
BETWEEN_STROKES_MS = 250
# Looking at the answer before clearing, and from the clear to the next pen-down.
LOOK_MS = 400
CLEAR_TO_DRAW_MS = 300
ANSWER_TIMEOUT_S = 10.0

Point = tuple[float, float]


# Digits as a person draws them, in fractions of the canvas, stroke by stroke.


def polyline(*vertices: Point) -> list[Point]:
    """The vertices joined by straight lines, sampled every STEP_FRACTION."""
    points = [vertices[0]]
    for start, end in itertools.pairwise(vertices):
        steps = max(1, math.ceil(math.dist(start, end) / STEP_FRACTION))
        points += [
            (start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
            for i in range(1, steps + 1)
        ]
    return points


def arc(centre: Point, radii: Point, from_degrees: float, to_degrees: float) -> list[Point]:
    """An elliptic arc (y down: 90 degrees is the bottom), sampled every STEP_FRACTION."""
    sweep = math.radians(to_degrees - from_degrees)
    steps = max(1, math.ceil(abs(sweep) * max(radii) / STEP_FRACTION))
    start = math.radians(from_degrees)
    return [
        (
            centre[0] + radii[0] * math.cos(start + sweep * i / steps),
            centre[1] + radii[1] * math.sin(start + sweep * i / steps),
        )
        for i in range(steps + 1)
    ]


def figure_eight() -> list[Point]:
    """One stroke: the top loop, across the middle, the bottom loop and back up."""

    def at(turn: float) -> Point:
        angle = 2 * math.pi * 1.03 * turn
        return 0.5 + 0.15 * math.sin(2 * angle), 0.5 - 0.3 * math.cos(angle)

    fine = [at(i / 1000) for i in range(1001)]
    length = sum(math.dist(a, b) for a, b in itertools.pairwise(fine))
    steps = math.ceil(length / STEP_FRACTION)
    return [at(i / steps) for i in range(steps + 1)]


DIGITS: dict[int, list[list[Point]]] = {
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
DESKTOP_DIGITS = list(range(10))
PHONE_DIGITS = [2, 4, 7, 8]


# Watching the page's socket.


@dataclass
class Recording:
    """The text frames one page sent, with their send times, and the answers it got."""

    sent: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    digits: list[int | None] = field(default_factory=list)
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
                self.digits.append(message.get("digit"))


def wait_until(page: Page, condition: Callable[[], bool], what: str) -> None:
    """Let the page run until the condition holds (its events reach us meanwhile)."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        page.wait_for_timeout(20)


def canvas_mapping(page: Page) -> Callable[[Point], Point]:
    """Viewport coordinates of points given in fractions of the drawing canvas."""
    box = page.locator("canvas[data-role=pad]").bounding_box()
    assert box is not None
    return lambda fraction: (
        box["x"] + fraction[0] * box["width"],
        box["y"] + fraction[1] * box["height"],
    )


def paced(page: Page, points: list[Point], move: Callable[[Point], None]) -> None:
    """Move through the points one sample period apart (later, if the browser is slower)."""
    started = time.monotonic()
    for number, point in enumerate(points, start=1):
        move(point)
        ahead_s = started + number * SAMPLE_S - time.monotonic()
        if ahead_s > 0.001:
            page.wait_for_timeout(ahead_s * 1000.0)


def mouse_stroke(page: Page, points: list[Point]) -> None:
    """Draw one stroke with the mouse."""
    canvas_point = canvas_mapping(page)
    page.mouse.move(*canvas_point(points[0]))
    page.mouse.down()
    paced(page, points[1:], lambda point: page.mouse.move(*canvas_point(point)))
    page.mouse.up()


def touch_stroke(page: Page, points: list[Point]) -> None:
    """Draw one stroke with a finger (touch events through the DevTools protocol)."""
    session = page.context.new_cdp_session(page)
    canvas_point = canvas_mapping(page)

    def touch(kind: str, point: Point | None) -> None:
        touch_points = []
        if point is not None:
            x, y = canvas_point(point)
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


def draw_digits(
    page: Page, recording: Recording, digits: list[int], stroke: Callable[[Page, list[Point]], None]
) -> list[tuple[int, int, int, int | None]]:
    """Draw each digit, clearing before the next.

    Returns, per digit, the range of its messages and the page's last answer to it.
    """
    wait_until(
        page,
        lambda: page.locator("[data-role=status]").get_attribute("data-state") == "live",
        "the socket",
    )
    ranges = []
    for number, digit in enumerate(digits):
        first = len(recording.sent)
        if number > 0:
            page.keyboard.press("Escape")
            wait_until(page, partial(sent_more, recording, first), "the clear message")
            page.wait_for_timeout(CLEAR_TO_DRAW_MS)
        for index, points in enumerate(DIGITS[digit]):
            if index > 0:
                page.wait_for_timeout(BETWEEN_STROKES_MS)
            stroke(page, points)
        wait_until(page, lambda: answered_all(recording), f"the answer to the drawn {digit}")
        ranges.append((digit, first, len(recording.sent), recording.digits[-1]))
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
    playwright: Playwright, url: str, device: str, digits: list[int]
) -> tuple[str, list[dict[str, Any]]]:
    """Draw `digits` on one page; returns the socket's query string and the drawings."""
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
        ranges = draw_digits(page, recording, digits, stroke)
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
        for digit, first, end, answer in ranges:
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
            drawings.append(
                {
                    "device": name,
                    "digit": digit,
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


def dump_fixture(fixture: dict[str, Any]) -> str:
    """JSON with one message a line: small, and readable in a diff."""
    lines = ["{"]
    for key, value in fixture.items():
        if key != "drawings":
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "drawings": [')
    for number, drawing in enumerate(fixture["drawings"]):
        lines.append("    {")
        for key in ("device", "digit", "answer", "canvas", "page_png_bytes"):
            lines.append(f"      {json.dumps(key)}: {json.dumps(drawing[key])},")
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
    with tempfile.TemporaryDirectory() as logs, sync_playwright() as playwright:
        server = start_server(Path(logs))
        try:
            for device, digits in (("desktop", DESKTOP_DIGITS), (PHONE, PHONE_DIGITS)):
                print(f"drawing {digits} on {device} ...", flush=True)
                query, recorded = record_device(playwright, server.http_url + "/", device, digits)
                drawings += recorded
        except RuntimeError as error:
            print(f"python -m bench.record: {error}", file=sys.stderr)
            return 1
        finally:
            server.stop()
        browser_version = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        version = browser_version.version
        browser_version.close()

    fixture = {
        "about": "What the page sent on /ws while python -m bench.record drew these digits on "
        "it; times in ms since each drawing's first message; page_png_bytes: the size of the "
        "page's DrawingPad.toBlob() PNG of the canvas after each message; answer: the "
        "server's last answer to the drawing, as the page got it.",
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
    print(
        f"wrote {arguments.out}: {len(drawings)} drawings, {messages} messages, "
        f"{arguments.out.stat().st_size / 1024:.1f} kB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
