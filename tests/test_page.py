"""The page in real headless Chromium against a real server.

Drawing with a mouse and with a finger on an emulated phone (live answers under the pen, the
drawn digit at the end, no scrolling), a pad as wide as the window, the ink on the wire
(PROTOCOL.md, "v2 additions: Ink": `ink` messages with only the new points, `undo`, `clear`,
the whole drawing as `strokes` after a reconnect, new canvas sizes after the phone turns
round), upload, drag-and-drop, saved strokes, the empty state, and the HTTP fallback when the
WebSocket cannot connect. After each test, every connection's messages are replayed as the
server would apply them and checked against the protocol.

The test run saves a screenshot of the page after drawing a 7 to a temporary folder, so the
committed `docs/screenshot.png` stays as it is; to refresh that one, run with
`DIGITS_SCREENSHOT=docs/screenshot.png` (a path relative to the repository, or absolute).

Debian's `chromium` drives the tests (`executable_path`): Playwright's own browser download
is not used.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    WebSocket,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from tests.conftest import TIMEOUT_S, RunningServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
# Where to save the screenshot instead of a temporary folder.
SCREENSHOT_VARIABLE = "DIGITS_SCREENSHOT"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
TIMEOUT_MS = TIMEOUT_S * 1000
# A person's pen moves in small steps; these pauses are the time between pointer samples.
STEP_FRACTION = 0.012
STEP_PAUSE_MS = 12
# Longer than the page's 50 ms snapshot throttle.
REST_MS = 150
# The page rounds ink to 0.1 px on the wire and saves strokes to 0.01 px.
WIRE_TOLERANCE_PX = 0.06
# The page's pen is this fraction of the pad's shorter side.
LINE_WIDTH_FRACTION = 1 / 28
DRAWING_MESSAGES = {"ink", "strokes", "undo", "clear"}
INK_KEYS = {"type", "seq", "width", "height", "line_width", "stroke", "points"}
STROKES_KEYS = {"type", "seq", "width", "height", "line_width", "strokes"}
ANNOUNCEMENT = r"^{digit} \(\d+ %\)$"
SOCKET_URL = re.compile(r"/ws\?")

Point = tuple[float, float]


# Digits as a person draws them, in fractions of the square in the middle of the canvas (see
# `canvas_point`), one stroke each.

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


def oval(centre: Point, radii: Point, turns: float = 1.08) -> list[Point]:
    """An anticlockwise loop from the top, overlapping a little where it closes, like a 0."""
    circumference = 2 * math.pi * max(radii)
    steps = math.ceil(circumference * turns / STEP_FRACTION)
    return [
        (
            centre[0] - radii[0] * math.sin(2 * math.pi * turns * i / steps),
            centre[1] - radii[1] * math.cos(2 * math.pi * turns * i / steps),
        )
        for i in range(steps + 1)
    ]


DIGITS: dict[str, list[Point]] = {
    "1": polyline((0.53, 0.2), (0.5, 0.5), (0.48, 0.8)),
    "7": polyline((0.3, 0.25), (0.7, 0.25), (0.56, 0.5), (0.45, 0.8)),
    "0": oval((0.5, 0.5), (0.2, 0.29)),
}


def digit_png(digit: str, size: int = 280) -> bytes:
    """A PNG of a digit drawn with the same strokes, dark on white, as an image file would be."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    width = size // 14
    points = [(x * size, y * size) for x, y in DIGITS[digit]]
    draw.line(points, fill="black", width=width, joint="curve")
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Watching the page: its WebSocket traffic and anything that goes wrong in it.

@dataclass
class Connection:
    """One WebSocket connection of the page: the messages it sent and the messages it got."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    sent_bytes: list[int] = field(default_factory=list)
    binary: list[bytes] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def on_sent(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.binary.append(payload)
            return
        self.sent.append(json.loads(payload))
        self.sent_bytes.append(len(payload.encode()))

    def on_received(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.received.append(json.loads(payload))

    @property
    def predictions(self) -> list[dict[str, Any]]:
        return [message for message in self.received if message["type"] == "prediction"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [message for message in self.received if message["type"] == "error"]

    def describe(self) -> str:
        """The last few messages each way, for a failure message."""
        sent = [(message["type"], message["seq"]) for message in self.sent[-4:]]
        received = [(message["type"], message.get("seq")) for message in self.received[-4:]]
        return f"sent {sent}, received {received}"


@dataclass
class Ink:
    """The drawing a server holds after a connection's messages, as PROTOCOL.md defines it."""

    width: int = 0
    height: int = 0
    line_width: float = 0.0
    strokes: list[list[Point]] = field(default_factory=list)


def replay(messages: list[dict[str, Any]]) -> Ink:
    """Apply the page's messages as the server would, asserting that each obeys the protocol."""
    ink = Ink()
    for message in messages:
        kind = message["type"]
        assert kind in DRAWING_MESSAGES, message
        if kind in ("ink", "strokes"):
            assert set(message) == (INK_KEYS if kind == "ink" else STROKES_KEYS), message
            width, height = message["width"], message["height"]
            assert isinstance(width, int) and isinstance(height, int), message
            assert 1 <= width <= 4096 and 1 <= height <= 4096, message
            assert message["line_width"] == pytest.approx(pen_width(width, height), abs=0.01), (
                message
            )
        if kind == "ink":
            count = len(ink.strokes)
            assert message["stroke"] in (count - 1, count) and message["stroke"] >= 0, (
                f"stroke {message['stroke']} with {count} strokes held: {message}"
            )
            if ink.strokes and (width, height) != (ink.width, ink.height):
                # A new canvas size scales the ink already there.
                scale_x, scale_y = width / ink.width, height / ink.height
                ink.strokes = [[(x * scale_x, y * scale_y) for x, y in s] for s in ink.strokes]
            if message["stroke"] == count:
                assert message["points"], f"a new stroke starts with a point: {message}"
                ink.strokes.append([])
            ink.strokes[message["stroke"]] += wire_points(message["points"])
            ink.width, ink.height, ink.line_width = width, height, message["line_width"]
        elif kind == "strokes":
            ink = Ink(width, height, message["line_width"])
            ink.strokes = [wire_points(stroke) for stroke in message["strokes"]]
        else:
            assert set(message) == {"type", "seq"}, message
            ink.strokes = ink.strokes[:-1] if kind == "undo" else []
    return ink


def pen_width(width: float, height: float) -> float:
    """The page's pen on a pad of this size, in CSS pixels."""
    return min(width, height) * LINE_WIDTH_FRACTION


def wire_points(points: list[list[float]]) -> list[Point]:
    """Points as the wire carries them: [x, y] in CSS pixels, at most two decimals, no time."""
    for point in points:
        assert isinstance(point, list) and len(point) == 2, point
        assert all(isinstance(value, int | float) for value in point), point
        assert all(round(value, 2) == value for value in point), point
    return [(x, y) for x, y in points]


def check_wire(connection: Connection, refused: Collection[int] = ()) -> None:
    """A connection's traffic obeys the protocol: text messages only, seqs from 0, no errors.

    `refused`: seqs a relay kept from the server and answered with an error itself.
    """
    assert connection.binary == [], "the page sent a binary frame"
    seqs = [message["seq"] for message in connection.sent]
    assert seqs == sorted(set(seqs)), seqs
    skipped = set(range(seqs[-1] + 1)) - set(seqs) if seqs else set()
    assert skipped <= set(refused), seqs
    replay([message for message in connection.sent if message["seq"] not in refused])
    assert [error for error in connection.errors if error["seq"] not in refused] == []
    answered = [answer["seq"] for answer in connection.predictions]
    assert answered == sorted(set(answered)), answered
    assert set(answered) <= set(seqs), answered


@dataclass
class Watch:
    """A page, the connections it opened and the errors it logged."""

    page: Page
    connections: list[Connection] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    @property
    def connection(self) -> Connection:
        wait_until(self.page, lambda: bool(self.connections), "a WebSocket connection")
        return self.connections[-1]

    def on_websocket(self, socket: WebSocket) -> None:
        connection = Connection()
        self.connections.append(connection)
        socket.on("framesent", connection.on_sent)
        socket.on("framereceived", connection.on_received)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


def wait_until(
    page: Page,
    condition: Callable[[], bool],
    what: str,
    state: Callable[[], str] = lambda: "",
) -> None:
    """Let the page run until the condition holds; fail after TIMEOUT_S, saying what was seen."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {TIMEOUT_S} s: {what} ({state()})")
        # Waiting inside Playwright also delivers its events (frames, requests) to us.
        page.wait_for_timeout(25)


def server_hello(watch: Watch) -> dict[str, Any]:
    """The hello the server sent the page, waiting for it if it is still on its way."""

    def hellos() -> list[dict[str, Any]]:
        return [message for message in watch.connection.received if message["type"] == "hello"]

    wait_until(watch.page, lambda: bool(hellos()), "the server's hello", watch.connection.describe)
    return hellos()[0]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API, for this module's tests (plain `def` tests: no asyncio loop)."""
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's headless Chromium, shared by the module's tests; each gets its own context."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    expect.set_options(timeout=TIMEOUT_MS)
    yield browser
    browser.close()


def open_page(
    context: BrowserContext, server: RunningServer, refused: Collection[int] = ()
) -> Iterator[Watch]:
    """Open the page, watch it, and after the test require that nothing went wrong in it.

    Playwright reports a relayed WebSocket's frames as the server side sees them; `refused`
    are the seqs the relay kept from the server.
    """
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch(page)
    page.on("websocket", watch.on_websocket)
    page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    page.on("console", watch.on_console)
    page.goto(server.http_url + "/")
    yield watch
    context.close()
    assert watch.page_errors == []
    assert watch.console_errors == []
    for connection in watch.connections:
        check_wire(connection, refused)


@pytest.fixture
def desktop(browser: Browser, server: RunningServer) -> Iterator[Watch]:
    """The page in a desktop window, with a mouse."""
    context = browser.new_context(viewport=DESKTOP_VIEWPORT, accept_downloads=True)
    yield from open_page(context, server)


@pytest.fixture
def phone(browser: Browser, playwright: Playwright, server: RunningServer) -> Iterator[Watch]:
    """The page on an emulated phone in portrait, with a touch screen."""
    context = browser.new_context(**playwright.devices[PHONE])
    yield from open_page(context, server)


@dataclass
class Relay:
    """Passes the page's WebSocket traffic through, records it, and can drop a connection.

    A page message whose seq is in `refuse` does not reach the server: the relay answers it
    with the server's `internal` error instead, as a server whose decoding failed would.
    """

    routes: list[WebSocketRoute] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    refuse: set[int] = field(default_factory=set)

    def __call__(self, page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        connection = Connection()
        self.routes.append(page_side)
        self.connections.append(connection)

        def upstream(message: str | bytes) -> None:
            connection.on_sent(message)
            seq = connection.sent[-1]["seq"] if isinstance(message, str) else None
            if seq in self.refuse:
                refusal = {"type": "error", "seq": seq, "code": "internal", "message": "test"}
                page_side.send(json.dumps(refusal))
                return
            server_side.send(message)

        def downstream(message: str | bytes) -> None:
            connection.on_received(message)
            page_side.send(message)

        page_side.on_message(upstream)
        server_side.on_message(downstream)


@pytest.fixture
def relayed(browser: Browser, server: RunningServer) -> Iterator[tuple[Watch, Relay]]:
    """The page in a desktop window, its WebSocket passing through a relay the test controls."""
    context = browser.new_context(viewport=DESKTOP_VIEWPORT)
    relay = Relay()
    context.route_web_socket(SOCKET_URL, relay)
    for watch in open_page(context, server, relay.refuse):
        yield watch, relay


@pytest.fixture
def refused(browser: Browser, server: RunningServer) -> Iterator[Watch]:
    """The page in a desktop window whose WebSocket cannot connect."""
    context = browser.new_context(viewport=DESKTOP_VIEWPORT)
    # Closing the socket before it opens is what a refused upgrade looks like to the page.
    context.route_web_socket(SOCKET_URL, lambda route: route.close())
    yield from open_page(context, server)


# Drawing.

def canvas_point(page: Page, fraction: Point, whole: bool = False) -> Point:
    """Viewport coordinates of a point given in fractions of the square in the middle of the
    drawing canvas (its side the canvas's shorter side), or of the `whole` canvas.

    The canvas is as wide as the window: a digit drawn in fractions of the whole of it would
    be three times wider than tall on a desktop, unlike anyone's.
    """
    box = page.locator("canvas[data-role=pad]").bounding_box()
    assert box is not None
    if whole:
        return box["x"] + fraction[0] * box["width"], box["y"] + fraction[1] * box["height"]
    side = min(box["width"], box["height"])
    left = box["x"] + (box["width"] - side) / 2
    top = box["y"] + (box["height"] - side) / 2
    return left + fraction[0] * side, top + fraction[1] * side


def bring_pad_into_view(page: Page) -> None:
    """Scroll the whole pad into view if it is not (a button pressed below it may scroll)."""
    page.locator("canvas[data-role=pad]").scroll_into_view_if_needed()


def mouse_stroke(
    page: Page, points: list[Point], before_up: Callable[[], None], whole: bool = False
) -> None:
    """Draw one stroke with the mouse; call before_up while the button is still down."""
    bring_pad_into_view(page)
    page.mouse.move(*canvas_point(page, points[0], whole))
    page.mouse.down()
    move_through(page, points[1:], whole)
    before_up()
    page.mouse.up()


def canvas_size(page: Page) -> tuple[int, int]:
    """The drawing canvas's size in whole CSS pixels, as the page reports it on the wire."""
    box = page.locator("canvas[data-role=pad]").bounding_box()
    assert box is not None
    return round(box["width"]), round(box["height"])


def move_through(page: Page, points: list[Point], whole: bool = False) -> None:
    """Move the mouse through these points, at a person's pace."""
    for point in points:
        page.mouse.move(*canvas_point(page, point, whole))
        page.wait_for_timeout(STEP_PAUSE_MS)


def touch_stroke(
    page: Page, points: list[Point], before_up: Callable[[], None], whole: bool = False
) -> None:
    """Draw one stroke with a finger (real touch events through the DevTools protocol)."""
    bring_pad_into_view(page)
    session = page.context.new_cdp_session(page)

    def touch(kind: str, point: Point | None) -> None:
        touch_points = []
        if point is not None:
            x, y = canvas_point(page, point, whole)
            touch_points = [{"x": x, "y": y, "id": 1, "radiusX": 6, "radiusY": 6, "force": 0.5}]
        session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})

    touch("touchStart", points[0])
    for point in points[1:]:
        touch("touchMove", point)
        page.wait_for_timeout(STEP_PAUSE_MS)
    before_up()
    touch("touchEnd", None)
    session.detach()


def draw_live(
    watch: Watch, digit: str, stroke: Callable[[Page, list[Point], Callable[[], None]], None]
) -> list[dict[str, Any]]:
    """Draw a digit in one stroke over the WebSocket; return the answers that came while drawing.

    With the pen still down, waits for two answers to messages of this stroke, then lifts it
    and waits for the answer to the last message. Every message of the stroke must be `ink`
    for one stroke, and a live one must not grow with the stroke: it carries only new points.
    """
    connection = watch.connection
    first = len(connection.sent)
    strokes_before = len(replay(connection.sent).strokes)
    live: list[dict[str, Any]] = []
    sent_before_up = 0

    def during_stroke() -> list[dict[str, Any]]:
        return [answer for answer in connection.predictions if answer["seq"] >= first]

    def before_up() -> None:
        nonlocal sent_before_up
        wait_until(watch.page, lambda: len(during_stroke()) >= 2, "two answers during the stroke")
        live.extend(during_stroke())
        # The pen rests a moment, so the last throttled message of the move has gone out and
        # the next one is the pen-up message.
        watch.page.wait_for_timeout(REST_MS)
        sent_before_up = len(connection.sent)

    stroke(watch.page, DIGITS[digit], before_up)
    wait_until(
        watch.page,
        lambda: answered_since(connection, sent_before_up),
        "the answer to the message sent at pen-up",
        connection.describe,
    )

    messages = connection.sent[first:]
    assert [message["type"] for message in messages] == ["ink"] * len(messages)
    assert {message["stroke"] for message in messages} == {strokes_before}
    # Each pen sample goes out once: no more points than the pen gave, in no more bytes than
    # a small envelope per message, however long the stroke grew while they went out.
    drawn = len(DIGITS[digit])
    points = [len(message["points"]) for message in messages]
    assert drawn // 2 <= sum(points) <= drawn, points
    assert sent_before_up - first >= 4, "a few live messages while the pen moved"
    envelopes = sum(len(compact_json({**message, "points": []})) for message in messages)
    assert sum(connection.sent_bytes[first:]) <= envelopes + len("[1234.5,1234.5],") * drawn
    return live


def compact_json(value: object) -> str:
    """JSON as the page writes it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def settle(watch: Watch) -> None:
    """Wait until the page has sent its last message and has its answer."""
    connection = watch.connection
    while True:
        wait_until(
            watch.page,
            lambda: answered_since(connection, 0),
            "the last answer",
            connection.describe,
        )
        sent = len(connection.sent)
        watch.page.wait_for_timeout(REST_MS)
        if len(connection.sent) == sent and answered_since(connection, 0):
            return


def answered_since(connection: Connection, sent_before: int) -> bool:
    """Whether a message was sent after the first `sent_before` and the last is answered."""
    return (
        len(connection.sent) > sent_before
        and bool(connection.predictions)
        and connection.predictions[-1]["seq"] == connection.sent[-1]["seq"]
    )


def send_and_answer(
    watch: Watch, action: Callable[[], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Do something that sends one message; return that message and the server's answer."""
    connection = watch.connection
    sent = len(connection.sent)
    action()
    wait_until(
        watch.page, lambda: answered_since(connection, sent), "an answer", connection.describe
    )
    assert len(connection.sent) == sent + 1, connection.sent[sent:]
    return connection.sent[-1], connection.predictions[-1]


def saved_strokes(page: Page) -> dict[str, Any]:
    """The pad's strokes, as "Save strokes" downloads them."""
    with page.expect_download() as download:
        page.locator("[data-action=save-strokes]").click()
    saved: dict[str, Any] = json.loads(Path(download.value.path()).read_text())
    return saved


def expect_ink_is_the_drawing(
    page: Page, *connections: Connection, tolerance_px: float = WIRE_TOLERANCE_PX
) -> None:
    """The ink these connections' messages leave on the server is exactly what the pad holds.

    Every point drawn reaches the server once, in order: none lost, none sent twice.
    `tolerance_px`: the wire's rounding, grown by any resize that scaled the ink up.
    """
    saved = saved_strokes(page)
    ink = replay([message for connection in connections for message in connection.sent])
    assert (ink.width, ink.height) == (saved["width"], saved["height"])
    assert ink.line_width == pytest.approx(saved["line_width"], abs=0.01)
    assert [len(stroke) for stroke in ink.strokes] == [len(s) for s in saved["strokes"]]
    for sent, drawn in zip(ink.strokes, saved["strokes"], strict=True):
        for (x, y), (drawn_x, drawn_y, _) in zip(sent, drawn, strict=True):
            assert abs(x - drawn_x) <= tolerance_px and abs(y - drawn_y) <= tolerance_px


def expect_answer(page: Page, digit: str) -> None:
    """The page shows and announces this digit as the answer to a finished picture."""
    answer = page.locator("[data-role=answer]")
    expect(answer).to_have_attribute("data-state", "prediction")
    expect(answer).to_have_attribute("data-digit", digit)
    expect(page.locator("[data-role=digit]")).to_have_text(digit)
    expect(page.locator("[data-role=announcer]")).to_have_text(
        re.compile(ANNOUNCEMENT.format(digit=digit))
    )
    expect(page.locator("[data-role=bars] li.winner")).to_have_attribute("data-digit", digit)
    expect(page.locator("canvas[data-role=seen]")).to_have_attribute("data-shown", "true")


def expect_empty(page: Page) -> None:
    """The page shows the calm empty state: an invitation, no guess, no bars."""
    answer = page.locator("[data-role=answer]")
    expect(answer).to_have_attribute("data-state", "empty")
    expect(page.get_by_text("Draw a digit or a number", exact=True)).to_be_visible()
    expect(page.locator("[data-role=digit]")).to_be_hidden()
    expect(page.locator("[data-role=announcer]")).to_have_text("")
    expect(page.locator("[data-role=bars] li.winner")).to_have_count(0)


# The tests.

@pytest.mark.parametrize("digit", ["1", "7", "0"])
def test_mouse_drawing_streams_ink_and_ends_on_the_drawn_digit(
    desktop: Watch, digit: str, tmp_path: Path
) -> None:
    """A digit drawn with the mouse streams ink, gets live answers before pen-up, then the digit."""
    page = desktop.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    live = draw_live(desktop, digit, mouse_stroke)

    assert len({answer["seq"] for answer in live}) >= 2
    final = desktop.connection.predictions[-1]
    assert final["digit"] == int(digit), final["probabilities"]
    expect_answer(page, digit)
    if digit == "7":
        # A relative DIGITS_SCREENSHOT is relative to the repository, not to the current folder.
        screenshot = ROOT / (os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "screenshot.png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, animations="disabled")
        assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    expect_ink_is_the_drawing(page, desktop.connection)


@pytest.mark.parametrize("digit", ["1", "7", "0"])
def test_touch_drawing_on_a_phone_draws_instead_of_scrolling(phone: Watch, digit: str) -> None:
    """A finger on a phone streams ink with live answers, ends on the digit, and never scrolls."""
    page = phone.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    canvas = page.locator("canvas[data-role=pad]")
    box = canvas.bounding_box()
    assert box is not None and box["width"] >= 100 and box["height"] >= 100
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
    # Make the page scrollable both ways, so that a stroke that scrolled it would show.
    page.evaluate(
        """() => {
          const spacer = document.createElement("div");
          spacer.style.height = "3000px";
          document.body.append(spacer);
          window.scrollTo(0, 24);
          window.pointerLog = [];
          const canvas = document.querySelector("canvas[data-role=pad]");
          for (const type of ["pointerdown", "pointercancel"]) {
            canvas.addEventListener(type, (event) => {
              window.pointerLog.push(`${event.type}:${event.pointerType}`);
            });
          }
        }"""
    )
    scroll_before = page.evaluate("window.scrollY")
    scroll_during: list[float] = []

    def touch_and_check(page: Page, points: list[Point], before_up: Callable[[], None]) -> None:
        def check_then_lift() -> None:
            before_up()
            scroll_during.append(page.evaluate("window.scrollY"))

        touch_stroke(page, points, check_then_lift)

    live = draw_live(phone, digit, touch_and_check)

    assert len({answer["seq"] for answer in live}) >= 2
    assert page.evaluate("window.pointerLog") == ["pointerdown:touch"]
    assert scroll_during == [scroll_before]
    assert page.evaluate("window.scrollY") == scroll_before
    expect_answer(page, digit)
    expect_ink_is_the_drawing(page, phone.connection)


def test_the_page_starts_empty_and_fits_a_phone(phone: Watch) -> None:
    """Before any drawing the page invites one, and nothing is wider than the phone."""
    page = phone.page
    expect_empty(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    # The pad is as wide as the phone allows, and square as before numbers.
    width, height = canvas_size(page)
    assert width >= page.viewport_size["width"] - 32
    assert abs(width - height) <= 1
    canvases = page.locator("canvas").evaluate_all(
        "all => all.map(c => c.getBoundingClientRect().width * c.getBoundingClientRect().height)"
    )
    pad_area = page.locator("canvas[data-role=pad]").evaluate(
        "c => c.getBoundingClientRect().width * c.getBoundingClientRect().height"
    )
    assert pad_area == max(canvases)
    touch_action = page.locator("canvas[data-role=pad]").evaluate(
        "c => getComputedStyle(c).touchAction"
    )
    assert touch_action == "none"
    # The backing store follows devicePixelRatio, so ink is sharp on the phone's screen.
    backing, css, ratio = page.locator("canvas[data-role=pad]").evaluate(
        "c => [c.width, c.getBoundingClientRect().width, devicePixelRatio]"
    )
    assert abs(backing - css * ratio) <= 1
    for action in ("undo", "clear"):
        expect(page.locator(f"[data-action={action}]")).to_have_accessible_name(
            re.compile(action, re.IGNORECASE)
        )


def test_the_pad_is_as_wide_as_a_desktop_window(desktop: Watch) -> None:
    """On a desktop the pad spans the window, no shorter than the square pad was (440 px)."""
    page = desktop.page
    width, height = canvas_size(page)
    assert width >= DESKTOP_VIEWPORT["width"] - 32
    assert height >= 440
    box = page.locator("canvas[data-role=pad]").bounding_box()
    assert box is not None and box["y"] >= 0
    # The pad and its toolbar fit the window, so a whole drawing can be made without scrolling.
    toolbar = page.locator(".toolbar").bounding_box()
    assert toolbar is not None
    assert toolbar["y"] + toolbar["height"] <= DESKTOP_VIEWPORT["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP_VIEWPORT["width"]


def test_turning_the_phone_round_sends_the_new_canvas_size(phone: Watch) -> None:
    """After the canvas changes size, the next ink names the new size and the digit still reads.

    The ink already drawn is scaled by each side's own factor (PROTOCOL.md), so the 7 is
    drawn in fractions of the whole canvas: its bar keeps its place in them on the wider pad.
    """
    page = phone.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    touch_stroke(page, polyline((0.4, 0.25), (0.6, 0.25)), lambda: None, whole=True)
    settle(phone)
    connection = phone.connection
    before = connection.sent[-1]
    portrait = page.viewport_size
    assert portrait is not None
    sent = len(connection.sent)

    page.set_viewport_size({"width": portrait["height"], "height": portrait["width"]})
    wait_until(page, lambda: canvas_size(page) != (before["width"], before["height"]), "a resize")
    touch_stroke(page, polyline((0.6, 0.25), (0.56, 0.5), (0.52, 0.85)), lambda: None, whole=True)
    settle(phone)

    after = connection.sent[sent]
    assert after["type"] == "ink" and after["stroke"] == 1, after
    assert (after["width"], after["height"]) == canvas_size(page)
    # Turned round, the pad is wider and less tall, and the pen follows the shorter side.
    assert after["width"] > before["width"] and after["height"] < before["height"]
    assert after["line_width"] < before["line_width"]
    assert connection.predictions[-1]["digit"] == 7, connection.predictions[-1]["probabilities"]
    expect_answer(page, "7")
    # The bar was rounded on the wire at the portrait size, then scaled up.
    growth = max(after["width"] / before["width"], after["height"] / before["height"])
    expect_ink_is_the_drawing(page, connection, tolerance_px=WIRE_TOLERANCE_PX * growth)


def test_undo_sends_undo_and_the_answer_goes_back(desktop: Watch) -> None:
    """Undo (Ctrl+Z, then the button) sends `undo`, answered for the drawing without that stroke."""
    page = desktop.page
    undo = page.locator("[data-action=undo]")
    expect(undo).to_be_disabled()
    draw_live(desktop, "1", mouse_stroke)
    expect_answer(page, "1")
    one = desktop.connection.predictions[-1]

    # A flag on top of the 1: a second stroke changes the answer, and undo takes it back.
    mouse_stroke(page, polyline((0.32, 0.3), (0.53, 0.2)), lambda: None)
    settle(desktop)
    flagged = desktop.connection.predictions[-1]
    assert flagged["probabilities"] != pytest.approx(one["probabilities"], abs=1e-3)
    page.locator("[data-action=clear]").focus()
    message, answer = send_and_answer(desktop, lambda: page.keyboard.press("Control+z"))
    assert message == {"type": "undo", "seq": message["seq"]}
    assert answer["seq"] == message["seq"]
    assert answer["probabilities"] == pytest.approx(one["probabilities"], abs=1e-4)
    expect_answer(page, "1")

    message, answer = send_and_answer(desktop, undo.click)
    assert message == {"type": "undo", "seq": message["seq"]}
    assert answer["empty"] is True and answer["digit"] is None
    expect_empty(page)
    expect(undo).to_be_disabled()


def test_clear_sends_clear_and_the_answer_is_empty(desktop: Watch) -> None:
    """Clear (Escape, then the button) sends `clear`, answered empty; then ink starts afresh."""
    page = desktop.page
    connection = desktop.connection
    # Two strokes, then Escape; one stroke, then the button.
    for strokes, clear in (
        (2, lambda: page.keyboard.press("Escape")),
        (1, page.locator("[data-action=clear]").click),
    ):
        sent = len(connection.sent)
        for points in [DIGITS["1"], polyline((0.32, 0.3), (0.53, 0.2))][:strokes]:
            mouse_stroke(page, points, lambda: None)
        settle(desktop)
        # The drawing starts again from stroke 0, also after a clear.
        assert connection.sent[sent]["type"] == "ink" and connection.sent[sent]["stroke"] == 0
        assert connection.predictions[-1]["empty"] is False
        if strokes == 1:
            expect_answer(page, "1")
        page.locator("[data-action=undo]").focus()
        message, answer = send_and_answer(desktop, clear)
        assert message == {"type": "clear", "seq": message["seq"]}
        assert answer["empty"] is True and answer["digit"] is None
        expect_empty(page)
    # A late answer to an older message does not come back.
    page.wait_for_timeout(200)
    expect_empty(page)


def test_upload_and_drop_an_image_file(desktop: Watch) -> None:
    """Choosing or dropping an image posts it at once and shows its answer in the display."""
    page = desktop.page
    expect_empty(page)
    with page.expect_request(lambda request: "/api/predict" in request.url) as posted:
        page.locator("input[type=file]").set_input_files(
            {"name": "seven.png", "mimeType": "image/png", "buffer": digit_png("7")}
        )
    assert posted.value.method == "POST"
    expect_answer(page, "7")
    expect(page.locator("[data-role=source]")).to_have_text("Uploaded seven.png")

    page.evaluate(
        """async (base64) => {
          const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], "zero.png", { type: "image/png" }));
          const target = document.querySelector("canvas[data-role=pad]");
          for (const type of ["dragenter", "dragover", "drop"]) {
            const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
            target.dispatchEvent(new DragEvent(type, init));
          }
        }""",
        base64.b64encode(digit_png("0")).decode(),
    )
    expect_answer(page, "0")
    expect(page.locator("[data-role=source]")).to_have_text("Uploaded zero.png")

    # A file that is no picture gets the server's reason, and no guess.
    page.locator("input[type=file]").set_input_files(
        {"name": "notes.png", "mimeType": "image/png", "buffer": b"these are not pixels"}
    )
    expect(page.locator("[data-role=problem]")).to_contain_text("Uploaded notes.png: ")
    # Chromium logs every 4xx answer; this one was asked for.
    assert [error for error in desktop.console_errors if "status of 400" not in error] == []
    desktop.console_errors.clear()
    # Nothing was drawn, so the page sent no messages.
    assert all(not connection.sent for connection in desktop.connections)


def test_save_strokes_downloads_them_as_json(desktop: Watch) -> None:
    """"Save strokes" downloads what was drawn in the scripted client's format."""
    page = desktop.page
    mouse_stroke(page, DIGITS["7"], lambda: None)
    mouse_stroke(page, polyline((0.42, 0.52), (0.68, 0.52)), lambda: None)
    with page.expect_download() as download:
        page.locator("[data-action=save-strokes]").click()
    recording = json.loads(Path(download.value.path()).read_text())

    box = page.locator("canvas[data-role=pad]").bounding_box()
    assert box is not None
    assert recording["width"] == round(box["width"])
    assert recording["height"] == round(box["height"])
    assert recording["line_width"] == pytest.approx(
        pen_width(recording["width"], recording["height"]), abs=0.01
    )
    assert len(recording["strokes"]) == 2
    for stroke in recording["strokes"]:
        assert len(stroke) >= 10
        assert all(len(point) == 3 for point in stroke)
        assert all(0 <= x <= recording["width"] for x, _, _ in stroke)
        assert all(0 <= y <= recording["height"] for _, y, _ in stroke)
        times = [t for _, _, t in stroke]
        assert times == sorted(times)
    assert recording["strokes"][1][0][2] > recording["strokes"][0][-1][2]


def test_a_reconnect_mid_stroke_sends_the_whole_drawing_then_ink(
    relayed: tuple[Watch, Relay],
) -> None:
    """After the socket drops mid-stroke, the new one gets `strokes` with all drawn, then `ink`."""
    watch, relay = relayed
    page = watch.page
    status = page.locator("[data-role=status]")
    expect(status).to_have_attribute("data-state", "live")
    first = relay.connections[0]
    # A 7 in two strokes: the bar on the first connection, then the stem, cut in three: drawn
    # on the first connection, while there is none, and on the next.
    mouse_stroke(page, polyline((0.3, 0.25), (0.7, 0.25)), lambda: None)
    stem = polyline((0.7, 0.25), (0.56, 0.5), (0.45, 0.8))
    thirds = [stem[: len(stem) // 3], stem[len(stem) // 3 : 2 * len(stem) // 3]]
    thirds.append(stem[2 * len(stem) // 3 :])

    page.mouse.move(*canvas_point(page, thirds[0][0]))
    page.mouse.down()
    move_through(page, thirds[0][1:])
    wait_until(
        page,
        lambda: answered_since(first, 0) and first.sent[-1].get("stroke") == 1,
        "an answer to the stem on the first connection",
        first.describe,
    )
    relay.routes[0].close(code=1012, reason="server restart")
    expect(status).to_have_attribute("data-state", "reconnecting")
    move_through(page, thirds[1])
    wait_until(
        page,
        lambda: len(relay.connections) == 2 and bool(relay.connections[1].sent),
        "a reconnect and the whole drawing on it",
    )
    second = relay.connections[1]
    move_through(page, thirds[2])
    page.mouse.up()
    wait_until(page, lambda: answered_since(second, 0), "the answer to pen-up", second.describe)
    expect(status).to_have_attribute("data-state", "live")

    whole = second.sent[0]
    assert whole["type"] == "strokes" and whole["seq"] == 0, whole
    held_before = replay(first.sent).strokes
    assert [len(stroke) for stroke in whole["strokes"][:1]] == [len(held_before[0])]
    # The strokes message holds the stem so far, with what was drawn while disconnected.
    assert len(whole["strokes"]) == 2
    assert len(whole["strokes"][1]) >= len(held_before[1]) + 2
    later = second.sent[1:]
    assert later and [message["type"] for message in later] == ["ink"] * len(later)
    assert {message["stroke"] for message in later} == {1}
    expect_ink_is_the_drawing(page, second)
    final = second.predictions[-1]
    assert final["seq"] == later[-1]["seq"]
    assert final["digit"] == 7, final["probabilities"]
    expect_answer(page, "7")

    # The same drawing sent whole on a fresh connection reads exactly the same.
    relay.routes[1].close(code=1012, reason="server restart")
    wait_until(
        page,
        lambda: len(relay.connections) == 3 and answered_since(relay.connections[2], 0),
        "the drawing on a third connection",
    )
    third = relay.connections[2]
    assert [message["type"] for message in third.sent] == ["strokes"]
    held = replay(second.sent).strokes
    assert third.sent[0]["strokes"] == [[list(point) for point in stroke] for stroke in held]
    assert third.predictions[-1]["probabilities"] == pytest.approx(
        final["probabilities"], abs=1e-4
    )
    for connection in relay.connections:
        check_wire(connection)


def test_a_refused_message_is_followed_by_the_whole_drawing(relayed: tuple[Watch, Relay]) -> None:
    """After an error for an ink message (mid-stroke or at pen-up), the page sends `strokes`."""
    watch, relay = relayed
    page = watch.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    connection = relay.connections[0]
    relay.refuse.add(3)
    pen_up = 0

    def refuse_the_pen_up() -> None:
        nonlocal pen_up
        wait_until(page, lambda: len(connection.sent) > 5, "messages after the refused one")
        page.wait_for_timeout(REST_MS)
        pen_up = len(connection.sent)
        relay.refuse.add(pen_up)

    mouse_stroke(page, DIGITS["7"], refuse_the_pen_up)
    wait_until(page, lambda: answered_since(connection, pen_up + 1), "an answer after pen-up",
               connection.describe)
    page.wait_for_timeout(REST_MS)

    kinds = [message["type"] for message in connection.sent]
    assert kinds[3] == "ink"
    # The update after the refused one carries the whole drawing, and ink goes on from there.
    assert kinds[4:pen_up] == ["strokes"] + ["ink"] * (pen_up - 5), kinds
    # The refused pen-up is followed, the pen being up, by the whole drawing once.
    assert kinds[pen_up:] == ["ink", "strokes"], kinds
    final = connection.predictions[-1]
    assert final["seq"] == pen_up + 1 and final["digit"] == 7, final
    server_side = Connection(sent=[m for m in connection.sent if m["seq"] not in relay.refuse])
    expect_ink_is_the_drawing(page, server_side)
    expect_answer(page, "7")
    expect(page.locator("[data-role=problem]")).to_have_text("")


def test_drawing_works_over_http_when_the_websocket_cannot_connect(refused: Watch) -> None:
    """With the WebSocket refused, every pen-up, undo and clear POSTs a PNG to /api/predict."""
    page = refused.page
    status = page.locator("[data-role=status]")
    expect(status).to_have_attribute("data-state", "fallback")
    expect(status).to_contain_text("Offline")

    def posted(action: Callable[[], None]) -> dict[str, Any]:
        """Do something that posts the canvas once; return the server's answer."""
        with page.expect_response(
            lambda response: "/api/predict" in response.url and response.request.method == "POST"
        ) as answered:
            action()
        assert answered.value.request.headers["content-type"] == "image/png"
        body: dict[str, Any] = answered.value.json()
        return body

    for digit in ("1", "7"):
        assert posted(lambda: page.keyboard.press("Escape"))["empty"] is True
        expect_empty(page)
        answer = posted(partial(mouse_stroke, page, DIGITS[digit], lambda: None))
        assert answer["digit"] == int(digit), answer["probabilities"]
        expect_answer(page, digit)

    # A stroke beside the 7, then undone: both post the canvas, and the answer is a 7 again.
    seven = page.locator("[data-role=answer]").get_attribute("data-ticket")
    posted(lambda: mouse_stroke(page, polyline((0.15, 0.5), (0.2, 0.75)), lambda: None))
    answer = posted(lambda: page.keyboard.press("Control+z"))
    assert answer["digit"] == 7, answer["probabilities"]
    expect(page.locator("[data-role=answer]")).not_to_have_attribute("data-ticket", str(seven))
    expect_answer(page, "7")
    assert refused.connections == []
