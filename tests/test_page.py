"""The page in real headless Chromium against a real server.

Drawing with a mouse and with a finger on an emulated phone (live answers under the pen, the
drawn digit at the end, no scrolling), clear, undo, upload, drag-and-drop, saved strokes, the
empty state, a reconnect, and the HTTP fallback when the WebSocket cannot connect. The test
run saves a screenshot of the page after drawing to `docs/screenshot.png`.

Debian's `chromium` drives the tests (`executable_path`): Playwright's own browser download
is not used.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
SCREENSHOT_PATH = ROOT / "docs" / "screenshot.png"
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
ANNOUNCEMENT = r"^{digit} \(\d+ %\)$"
SOCKET_URL = re.compile(r"/ws\?")

Point = tuple[float, float]


# Digits as a person draws them, in fractions of the canvas, one stroke each.

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
    """One WebSocket connection of the page: the pictures it sent and the messages it got."""

    sent: list[bytes] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def on_sent(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.sent.append(payload)

    def on_received(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.received.append(json.loads(payload))

    @property
    def predictions(self) -> list[dict[str, Any]]:
        return [message for message in self.received if message["type"] == "prediction"]


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


def open_page(context: BrowserContext, server: RunningServer) -> Iterator[Watch]:
    """Open the page, watch it, and after the test require that nothing went wrong in it."""
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
    """Passes the page's WebSocket traffic through, records it, and can drop a connection."""

    routes: list[WebSocketRoute] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)

    def __call__(self, page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        connection = Connection()
        self.routes.append(page_side)
        self.connections.append(connection)

        def upstream(message: str | bytes) -> None:
            connection.on_sent(message)
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
    for watch in open_page(context, server):
        yield watch, relay


@pytest.fixture
def refused(browser: Browser, server: RunningServer) -> Iterator[Watch]:
    """The page in a desktop window whose WebSocket cannot connect."""
    context = browser.new_context(viewport=DESKTOP_VIEWPORT)
    # Closing the socket before it opens is what a refused upgrade looks like to the page.
    context.route_web_socket(SOCKET_URL, lambda route: route.close())
    yield from open_page(context, server)


# Drawing.

def canvas_point(page: Page, fraction: Point) -> Point:
    """Viewport coordinates of a point given in fractions of the drawing canvas."""
    box = page.locator("canvas[data-role=pad]").bounding_box()
    assert box is not None
    return box["x"] + fraction[0] * box["width"], box["y"] + fraction[1] * box["height"]


def mouse_stroke(page: Page, points: list[Point], before_up: Callable[[], None]) -> None:
    """Draw one stroke with the mouse; call before_up while the button is still down."""
    page.mouse.move(*canvas_point(page, points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*canvas_point(page, point))
        page.wait_for_timeout(STEP_PAUSE_MS)
    before_up()
    page.mouse.up()


def touch_stroke(page: Page, points: list[Point], before_up: Callable[[], None]) -> None:
    """Draw one stroke with a finger (real touch events through the DevTools protocol)."""
    session = page.context.new_cdp_session(page)

    def touch(kind: str, point: Point | None) -> None:
        touch_points = []
        if point is not None:
            x, y = canvas_point(page, point)
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

    With the pen still down, waits for two answers to pictures of this stroke, then lifts it
    and waits for the answer to the last picture.
    """
    connection = watch.connection
    first_seq = len(connection.sent)
    live: list[dict[str, Any]] = []
    pictures_before_up = 0

    def during_stroke() -> list[dict[str, Any]]:
        return [answer for answer in connection.predictions if answer["seq"] >= first_seq]

    def before_up() -> None:
        nonlocal pictures_before_up
        wait_until(watch.page, lambda: len(during_stroke()) >= 2, "two answers during the stroke")
        live.extend(during_stroke())
        # The pen rests a moment, so the last throttled picture of the move has gone out and
        # the next one is the pen-up picture.
        watch.page.wait_for_timeout(REST_MS)
        pictures_before_up = len(connection.sent)

    stroke(watch.page, DIGITS[digit], before_up)
    wait_until(
        watch.page,
        lambda: answered_since(connection, pictures_before_up),
        "the answer to the picture sent at pen-up",
        lambda: f"{len(connection.sent)} pictures sent, {pictures_before_up} before pen-up; "
        f"answered seqs {[answer['seq'] for answer in connection.predictions][-5:]}",
    )
    return live


def settle(watch: Watch) -> None:
    """Wait until the page has sent its last picture and has its answer."""
    connection = watch.connection
    while True:
        wait_until(watch.page, lambda: answered_since(connection, 0), "the last answer")
        sent = len(connection.sent)
        watch.page.wait_for_timeout(REST_MS)
        if len(connection.sent) == sent and answered_since(connection, 0):
            return


def answered_since(connection: Connection, pictures_before: int) -> bool:
    """Whether a picture was sent after the first `pictures_before` and the last is answered."""
    return (
        len(connection.sent) > pictures_before
        and bool(connection.predictions)
        and connection.predictions[-1]["seq"] == len(connection.sent) - 1
    )


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
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible()
    expect(page.locator("[data-role=digit]")).to_be_hidden()
    expect(page.locator("[data-role=announcer]")).to_have_text("")
    expect(page.locator("[data-role=bars] li.winner")).to_have_count(0)


# The tests.

@pytest.mark.parametrize("digit", ["1", "7", "0"])
def test_mouse_drawing_streams_live_answers_and_ends_on_the_drawn_digit(
    desktop: Watch, digit: str
) -> None:
    """A digit drawn with the mouse gets live answers before the pen lifts, then the digit."""
    page = desktop.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    live = draw_live(desktop, digit, mouse_stroke)

    assert len({answer["seq"] for answer in live}) >= 2
    final = desktop.connection.predictions[-1]
    assert final["digit"] == int(digit), final["probabilities"]
    assert all(picture.startswith(b"\x89PNG\r\n\x1a\n") for picture in desktop.connection.sent)
    expect_answer(page, digit)
    if digit == "7":
        SCREENSHOT_PATH.parent.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT_PATH, animations="disabled")


@pytest.mark.parametrize("digit", ["1", "7", "0"])
def test_touch_drawing_on_a_phone_draws_instead_of_scrolling(phone: Watch, digit: str) -> None:
    """A finger draws on a phone: live answers, the drawn digit, and the page never scrolls."""
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


def test_the_page_starts_empty_and_fits_a_phone(phone: Watch) -> None:
    """Before any drawing the page invites one, and nothing is wider than the phone."""
    page = phone.page
    expect_empty(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
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


def test_undo_and_clear_by_button_and_key(desktop: Watch) -> None:
    """Undo (button, Ctrl+Z) sends the picture anew; clear (button, Escape) empties the page."""
    page = desktop.page
    connection = desktop.connection
    undo = page.locator("[data-action=undo]")
    expect(undo).to_be_disabled()

    draw_live(desktop, "1", mouse_stroke)
    expect_answer(page, "1")
    first_picture = connection.sent[-1]

    # A flag on top of the 1: a second stroke, then undone.
    mouse_stroke(page, polyline((0.36, 0.32), (0.53, 0.2)), lambda: None)
    settle(desktop)
    assert connection.sent[-1] != first_picture
    answered = len(connection.predictions)
    sent = len(connection.sent)
    page.locator("[data-action=clear]").focus()
    page.keyboard.press("Control+z")
    wait_until(page, lambda: answered_since(connection, sent), "the answer after undo")
    assert len(connection.predictions) > answered
    assert connection.sent[-1] == first_picture
    expect_answer(page, "1")

    undo.click()
    expect_empty(page)
    expect(undo).to_be_disabled()

    mouse_stroke(page, DIGITS["1"], lambda: None)
    expect(page.locator("[data-role=answer]")).to_have_attribute("data-state", "prediction")
    page.locator("[data-action=undo]").focus()
    page.keyboard.press("Escape")
    expect_empty(page)

    mouse_stroke(page, DIGITS["1"], lambda: None)
    expect(page.locator("[data-role=answer]")).to_have_attribute("data-state", "prediction")
    page.locator("[data-action=clear]").click()
    expect_empty(page)
    # The blank canvas is white paper, and a late answer to an older picture does not come back.
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
    # Nothing was drawn, so the canvas sent no pictures.
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
    assert recording["line_width"] == pytest.approx(recording["width"] / 14, abs=0.01)
    assert len(recording["strokes"]) == 2
    for stroke in recording["strokes"]:
        assert len(stroke) >= 10
        assert all(len(point) == 3 for point in stroke)
        assert all(0 <= x <= recording["width"] for x, _, _ in stroke)
        assert all(0 <= y <= recording["height"] for _, y, _ in stroke)
        times = [t for _, _, t in stroke]
        assert times == sorted(times)
    assert recording["strokes"][1][0][2] > recording["strokes"][0][-1][2]


def test_a_reconnect_loses_nothing_drawn(relayed: tuple[Watch, Relay]) -> None:
    """After the socket drops, the page reconnects and sends the whole canvas again."""
    watch, relay = relayed
    page = watch.page
    status = page.locator("[data-role=status]")
    expect(status).to_have_attribute("data-state", "live")

    mouse_stroke(page, DIGITS["1"], lambda: None)
    expect_answer(page, "1")
    ticket = page.locator("[data-role=answer]").get_attribute("data-ticket")

    relay.routes[0].close(code=1012, reason="server restart")
    wait_until(
        page,
        lambda: len(relay.connections) == 2 and bool(relay.connections[1].predictions),
        "a reconnect and an answer on the new connection",
    )
    expect(status).to_have_attribute("data-state", "live")
    # The new connection numbers its pictures from 0 again, and its first carries the 1.
    assert relay.connections[1].predictions[0]["seq"] == 0
    assert relay.connections[1].predictions[-1]["digit"] == 1
    expect(page.locator("[data-role=answer]")).not_to_have_attribute("data-ticket", str(ticket))
    expect_answer(page, "1")


def test_drawing_works_over_http_when_the_websocket_cannot_connect(refused: Watch) -> None:
    """With the WebSocket refused, every pen-up is answered through POST /api/predict."""
    page = refused.page
    status = page.locator("[data-role=status]")
    expect(status).to_have_attribute("data-state", "fallback")
    expect(status).to_contain_text("Offline")

    for digit in ("1", "0"):
        page.keyboard.press("Escape")
        expect_empty(page)
        with page.expect_request(
            lambda request: "/api/predict" in request.url and request.method == "POST"
        ) as posted:
            mouse_stroke(page, DIGITS[digit], lambda: None)
        assert posted.value.headers["content-type"] == "image/png"
        expect_answer(page, digit)
    assert refused.connections == []
