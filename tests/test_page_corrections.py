"""Correcting an answer on the page, in real headless Chromium against a real server.

The "Wrong?" control under an answer (PROTOCOL.md, "Corrections (v2)"): with the mouse and
with a finger on an emulated phone, by a digit button, a typed number and "not a digit", and
with the keyboard alone; for a drawing (its ink) and for an uploaded picture. Each test's
server has its own store and admin token, and every correction is checked in the export: there
exactly once, with the label, the ink the page drew (or the picture), the answer the person saw
and the model's version. Corrections made offline, or refused for a while, wait in the page and
arrive once; one the server refuses for good is dropped with a message.

The page, its drawing helpers and the browser fixtures are test_page.py's.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Playwright, Route, expect

from tests.conftest import TIMEOUT_S, RunningServer
from tests.test_page import (  # noqa: F401 (browser and playwright are fixtures)
    DESKTOP_VIEWPORT,
    DIGITS,
    PHONE,
    WIRE_TOLERANCE_PX,
    Point,
    Watch,
    browser,
    digit_png,
    draw_live,
    expect_answer,
    mouse_stroke,
    open_page,
    playwright,
    replay,
    saved_strokes,
    server_hello,
    touch_stroke,
    wait_until,
)

pytestmark = pytest.mark.browser

ADMIN_TOKEN = "page-test-admin-token"
STORAGE_KEY = "digits.corrections.waiting"
ANSWER_KEYS = {"digit", "confidence", "probabilities", "empty", "not_digit", "number"}
# The smallest target a finger hits reliably, in CSS pixels (WCAG 2.5.5).
FINGER_PX = 44
CORRECTIONS_URL = re.compile(r"/api/corrections$")
# How long to watch for a second copy of a correction that must arrive once.
QUIET_MS = 500
Stroke = Callable[[Page, list[Point], Callable[[], None]], None]


# The server, its export, and pages on it.

@pytest.fixture
def admin_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A server with its own corrections store, whose export the tests may read."""
    return server_factory("--admin-token", ADMIN_TOKEN)


@pytest.fixture
def desktop(browser: Browser, admin_server: RunningServer) -> Iterator[Watch]:  # noqa: F811
    """The page in a desktop window, with a mouse."""
    context = browser.new_context(viewport=DESKTOP_VIEWPORT)
    yield from open_page(context, admin_server)


@pytest.fixture
def phone(
    browser: Browser,  # noqa: F811
    playwright: Playwright,  # noqa: F811
    admin_server: RunningServer,
) -> Iterator[Watch]:
    """The page on an emulated phone in portrait, with a touch screen."""
    context = browser.new_context(**playwright.devices[PHONE])
    yield from open_page(context, admin_server)


def exported(server: RunningServer) -> list[dict[str, Any]]:
    """Every stored correction, from `GET /api/corrections/export` with the admin token."""
    response = httpx.get(
        server.http_url + "/api/corrections/export",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def model_version(server: RunningServer) -> str:
    """The served model's version, as `GET /api/model` states it."""
    response = httpx.get(server.http_url + "/api/model", timeout=TIMEOUT_S)
    version: str = response.json()["version"]
    return version


def waiting(page: Page) -> list[dict[str, Any]]:
    """The corrections that wait in the page's storage."""
    stored = page.evaluate(f"localStorage.getItem({json.dumps(STORAGE_KEY)})")
    entries: list[dict[str, Any]] = json.loads(stored) if stored else []
    return entries


def forgive_console(watch: Watch, *expected: str) -> None:
    """Drop the console errors a test caused on purpose (Chromium logs failed requests)."""
    watch.console_errors[:] = [
        error for error in watch.console_errors if not any(text in error for text in expected)
    ]


# Drawing and correcting.

def draw(watch: Watch, digit: str, stroke: Stroke) -> dict[str, Any]:
    """Clear the pad, draw a digit the model reads; return the answer the page shows."""
    page = watch.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    page.locator("[data-action=clear]").click()
    expect(page.locator("[data-role=correction]")).to_be_hidden()
    draw_live(watch, digit, stroke)
    expect_answer(page, digit)
    final: dict[str, Any] = watch.connection.predictions[-1]
    assert final["digit"] == int(digit), final["probabilities"]
    return final


def press(page: Page, selector: str, finger: bool) -> None:
    """Tap with a finger or click with the mouse."""
    target = page.locator(selector)
    if finger:
        target.tap()
    else:
        target.click()


def correct(page: Page, label: str, finger: bool = False) -> None:
    """Say the answer was wrong: a digit button, "not a digit", or a typed number."""
    press(page, "[data-action=wrong]", finger)
    expect(page.locator("[data-role=correction-form]")).to_be_visible()
    if label == "not_digit" or len(label) == 1:
        press(page, f"[data-action=correct-as][data-label='{label}']", finger)
        return
    press(page, "[data-role=correction-number]", finger)
    page.keyboard.type(label)
    press(page, "[data-action=correct-number]", finger)


def expect_thanks(page: Page) -> None:
    """The page says thank you, and the panel has closed."""
    status = page.locator("[data-role=correction-status]")
    expect(status).to_have_attribute("data-state", "stored")
    expect(status).to_contain_text("Thank you")
    expect(page.locator("[data-role=correction-form]")).to_be_hidden()
    expect(page.locator("[data-action=wrong]")).to_be_hidden()


def the_new_one(before: list[dict[str, Any]], server: RunningServer) -> dict[str, Any]:
    """The one correction stored since `before` was exported; fails if there are more or none."""
    known = {correction["id"] for correction in before}
    new = [correction for correction in exported(server) if correction["id"] not in known]
    assert len(new) == 1, new
    return new[0]


def expect_ink_correction(
    correction: dict[str, Any], label: str, watch: Watch, answer: dict[str, Any], version: str
) -> None:
    """A stored correction of the drawing on the pad: its label, ink, answer and model version."""
    assert correction["label"] == label
    assert "image" not in correction
    ink = correction["ink"]
    # The ink is what the server drew the answer from, point for point ...
    held = replay(watch.connection.sent)
    assert (ink["width"], ink["height"]) == (held.width, held.height)
    assert ink["line_width"] == pytest.approx(held.line_width, abs=1e-6)
    assert [len(stroke) for stroke in ink["strokes"]] == [len(stroke) for stroke in held.strokes]
    for stored, sent in zip(ink["strokes"], held.strokes, strict=True):
        flat = [value for point in sent for value in point]
        assert [value for point in stored for value in point] == pytest.approx(flat, abs=1e-6)
    # ... and what the pad holds: its strokes, canvas size and pen width.
    saved = saved_strokes(watch.page)
    assert (ink["width"], ink["height"]) == (saved["width"], saved["height"])
    assert ink["line_width"] == pytest.approx(saved["line_width"], abs=0.01)
    for stored, drawn in zip(ink["strokes"], saved["strokes"], strict=True):
        for (x, y), (drawn_x, drawn_y, _) in zip(stored, drawn, strict=True):
            assert abs(x - drawn_x) <= WIRE_TOLERANCE_PX and abs(y - drawn_y) <= WIRE_TOLERANCE_PX
    expect_answer_seen(correction, answer, version)


def expect_answer_seen(correction: dict[str, Any], answer: dict[str, Any], version: str) -> None:
    """The correction carries the answer the person saw, without the picture, and the version."""
    seen = correction["answer"]
    assert set(seen) <= ANSWER_KEYS, seen
    assert seen["digit"] == answer["digit"] and seen["empty"] is False
    assert seen["confidence"] == pytest.approx(answer["confidence"], abs=1e-6)
    assert seen["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-6)
    if answer.get("number") is not None:
        assert seen["number"]["text"] == answer["number"]["text"]
    assert correction["model_version"] == version


# The tests.

@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_a_wrong_answer_is_corrected_by_digit_number_and_not_a_digit(
    device: str, request: pytest.FixtureRequest, admin_server: RunningServer
) -> None:
    """With the mouse or a finger: a digit, a typed number, "not a digit"; each stored once."""
    watch: Watch = request.getfixturevalue(device)
    page = watch.page
    finger = device == "phone"
    stroke: Stroke = touch_stroke if finger else mouse_stroke
    version = model_version(admin_server)
    hello = server_hello(watch)
    assert hello["model"]["version"] == version
    # Closed, the control is one small button, offered only once there is an answer.
    expect(page.locator("[data-role=correction]")).to_be_hidden()

    for digit, label in (("7", "1"), ("1", "2026"), ("0", "not_digit")):
        answer = draw(watch, digit, stroke)
        wrong = page.locator("[data-action=wrong]")
        expect(wrong).to_be_visible()
        expect(wrong).to_have_attribute("aria-expanded", "false")
        expect(page.locator("[data-role=correction-form]")).to_be_hidden()
        before = exported(admin_server)
        correct(page, label, finger)
        expect_thanks(page)
        correction = the_new_one(before, admin_server)
        expect_ink_correction(correction, label, watch, answer, version)
        # The answer and its announcement stay as they were.
        expect_answer(page, digit)

    if finger:
        # Every target of the open control is big enough for a finger, and nothing is wider
        # than the phone.
        draw(watch, "1", stroke)
        page.locator("[data-action=wrong]").tap()
        targets = page.locator("[data-role=correction]").locator("button:visible, input")
        sizes = targets.evaluate_all(
            "all => all.map(e => [e.offsetWidth, e.offsetHeight])"
        )
        assert len(sizes) == 15
        for width, height in sizes:
            assert width >= FINGER_PX and height >= FINGER_PX, sizes
        assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    assert len(exported(admin_server)) == 3


def test_the_keyboard_alone_opens_corrects_and_escapes(
    desktop: Watch, admin_server: RunningServer
) -> None:
    """Tab reaches "Wrong?" after the toolbar; Enter opens it, Escape closes it, Enter sends."""
    page = desktop.page
    answer = draw(desktop, "7", mouse_stroke)
    wrong = page.locator("[data-action=wrong]")
    form = page.locator("[data-role=correction-form]")

    page.locator("[data-role=upload]").focus()
    page.keyboard.press("Tab")
    expect(wrong).to_be_focused()
    page.keyboard.press("Enter")
    expect(form).to_be_visible()
    expect(wrong).to_have_attribute("aria-expanded", "true")
    expect(page.locator("[data-action=correct-as][data-label='0']")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("[data-action=correct-as][data-label='1']")).to_be_focused()

    # Escape closes the control, not the drawing.
    page.keyboard.press("Escape")
    expect(form).to_be_hidden()
    expect(wrong).to_be_focused()
    expect(wrong).to_have_attribute("aria-expanded", "false")
    expect(page.locator("[data-action=undo]")).to_be_enabled()
    expect_answer(page, "7")

    page.keyboard.press("Enter")
    expect(form).to_be_visible()
    number = page.locator("[data-role=correction-number]")
    # Nine more digits, then the number field.
    for _ in range(10):
        page.keyboard.press("Tab")
    expect(number).to_be_focused()
    expect(number).to_have_accessible_name(re.compile("number", re.IGNORECASE))
    # Only digits go in; Enter with nothing typed asks for them and sends nothing.
    page.keyboard.press("Enter")
    expect(number).to_have_attribute("aria-invalid", "true")
    expect(number).to_be_focused()
    before = exported(admin_server)
    assert before == []
    page.keyboard.type("4a2")
    expect(number).to_have_value("42")
    page.keyboard.press("Enter")
    expect_thanks(page)
    expect(page.locator("[data-role=correction-status]")).to_be_focused()
    expect_ink_correction(
        the_new_one(before, admin_server), "42", desktop, answer, model_version(admin_server)
    )

    # Escape, with the control closed, clears the drawing as before, and the control goes.
    page.keyboard.press("Escape")
    expect(page.locator("[data-role=correction]")).to_be_hidden()
    expect(page.locator("[data-action=undo]")).to_be_disabled()


def test_an_uploaded_picture_is_corrected_with_the_picture(
    desktop: Watch, admin_server: RunningServer
) -> None:
    """Correcting an upload's answer sends the picture, not ink, with the answer seen."""
    page = desktop.page
    picture = digit_png("7")
    with page.expect_response(lambda response: "/api/predict" in response.url) as predicted:
        page.locator("input[type=file]").set_input_files(
            {"name": "seven.png", "mimeType": "image/png", "buffer": picture}
        )
    answer = predicted.value.json()
    expect_answer(page, "7")
    correct(page, "1")
    expect_thanks(page)

    correction = the_new_one([], admin_server)
    assert correction["label"] == "1" and "ink" not in correction
    header, _, data = correction["image"].partition(",")
    assert header == "data:image/png;base64"
    stored = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    sent = Image.open(io.BytesIO(picture)).convert("RGB")
    assert stored.size == sent.size and stored.tobytes() == sent.tobytes()
    expect_answer_seen(correction, answer, model_version(admin_server))
    assert "input_png" in answer and "input_png" not in correction["answer"]


def test_a_correction_made_offline_arrives_once_back_online(
    desktop: Watch, admin_server: RunningServer
) -> None:
    """Offline, a correction waits in the page; online again, it is stored exactly once."""
    page = desktop.page
    answer = draw(desktop, "7", mouse_stroke)
    page.context.set_offline(True)
    wait_until(page, lambda: page.evaluate("navigator.onLine") is False, "the page offline")
    correct(page, "1")
    status = page.locator("[data-role=correction-status]")
    expect(status).to_have_attribute("data-state", "waiting")
    expect(status).to_contain_text("offline")
    assert [entry["body"]["label"] for entry in waiting(page)] == ["1"]
    assert exported(admin_server) == []

    page.context.set_offline(False)
    expect(status).to_have_attribute("data-state", "stored")
    expect(status).to_contain_text("Thank you")
    assert waiting(page) == []
    # The socket's reconnect asks for the queue again: nothing more goes.
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    page.wait_for_timeout(QUIET_MS)
    correction = the_new_one([], admin_server)
    expect_answer_seen(correction, answer, model_version(admin_server))
    assert correction["label"] == "1"
    assert correction["ink"]["strokes"] == [
        [list(point) for point in stroke] for stroke in replay(desktop.connections[0].sent).strokes
    ]
    forgive_console(desktop, "ERR_INTERNET_DISCONNECTED")


def test_a_correction_that_could_not_go_is_sent_after_a_reload(
    desktop: Watch, admin_server: RunningServer
) -> None:
    """With the server out of reach, a correction waits in storage and goes on the next visit."""
    page = desktop.page
    draw(desktop, "1", mouse_stroke)
    page.route(CORRECTIONS_URL, lambda route: route.abort("connectionrefused"))
    correct(page, "7")
    status = page.locator("[data-role=correction-status]")
    expect(status).to_have_attribute("data-state", "waiting")
    expect(status).to_contain_text("cannot be reached")
    assert len(waiting(page)) == 1

    page.unroute(CORRECTIONS_URL)
    page.reload()
    wait_until(page, lambda: len(exported(admin_server)) == 1, "the stored correction")
    wait_until(page, lambda: waiting(page) == [], "an empty queue")
    page.wait_for_timeout(QUIET_MS)
    assert [correction["label"] for correction in exported(admin_server)] == ["7"]
    forgive_console(desktop, "ERR_CONNECTION_REFUSED")


def test_busy_means_later_and_refused_means_never(
    desktop: Watch, admin_server: RunningServer
) -> None:
    """A 503 with Retry-After keeps the correction and sends it once after; a 400 drops it."""
    page = desktop.page
    draw(desktop, "7", mouse_stroke)
    refusals: list[int] = []

    def busy_once(route: Route) -> None:
        if refusals:
            route.continue_()
            return
        refusals.append(503)
        body = {"error": {"code": "unavailable", "message": "try again shortly"}}
        route.fulfill(status=503, headers={"Retry-After": "1"}, json=body)

    page.route(CORRECTIONS_URL, busy_once)
    correct(page, "1")
    status = page.locator("[data-role=correction-status]")
    expect(status).to_have_attribute("data-state", "waiting")
    expect(status).to_contain_text("will be sent")
    expect(status).to_have_attribute("data-state", "stored")
    assert [correction["label"] for correction in exported(admin_server)] == ["1"]
    assert waiting(page) == []
    page.unroute(CORRECTIONS_URL)

    draw(desktop, "1", mouse_stroke)
    body = {"error": {"code": "bad_request", "message": "that is no label"}}
    page.route(CORRECTIONS_URL, lambda route: route.fulfill(status=400, json=body))
    correct(page, "4")
    expect(status).to_have_attribute("data-state", "refused")
    expect(status).to_contain_text("that is no label")
    # Not kept for later; the person may choose again.
    assert waiting(page) == []
    expect(page.locator("[data-action=wrong]")).to_be_visible()
    page.unroute(CORRECTIONS_URL)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    page.wait_for_timeout(QUIET_MS)
    assert [correction["label"] for correction in exported(admin_server)] == ["1"]
    forgive_console(desktop, "status of 503", "status of 400")


def test_a_correction_whose_answer_was_lost_is_stored_once(
    desktop: Watch, admin_server: RunningServer
) -> None:
    """Stored, but the 201 never reached the page: the retry carries the same Idempotency-Key."""
    page = desktop.page
    draw(desktop, "7", mouse_stroke)
    keys: list[str] = []

    def lose_the_answer(route: Route) -> None:
        keys.append(route.request.headers["idempotency-key"])
        stored = route.fetch()
        assert stored.status == 201
        route.abort("connectionreset")

    page.route(CORRECTIONS_URL, lose_the_answer)
    correct(page, "1")
    status = page.locator("[data-role=correction-status]")
    expect(status).to_have_attribute("data-state", "waiting")
    assert len(exported(admin_server)) == 1
    page.unroute(CORRECTIONS_URL)

    with page.expect_request(CORRECTIONS_URL) as retried:
        page.evaluate("window.dispatchEvent(new Event('online'))")
    assert retried.value.headers["idempotency-key"] == keys[0]
    expect(status).to_have_attribute("data-state", "stored")
    page.wait_for_timeout(QUIET_MS)
    assert [correction["label"] for correction in exported(admin_server)] == ["1"]
    assert waiting(page) == []
    forgive_console(desktop, "ERR_CONNECTION_RESET")
