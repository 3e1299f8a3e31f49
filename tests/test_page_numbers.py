"""Numbers and "not a digit" on the page, in real headless Chromium against a real server.

A number drawn digit by digit with the mouse and with a finger on an emulated phone
(PROTOCOL.md, "The prediction object, v2"): the page reads it as it grows ("2", "20", "202",
"2026"), shows each digit with its confidence as a button whose press (click, tap or key)
shows its ten bars, outlines the pieces' boxes over the drawing without making them ink, and
announces the number. A letter and a scribble are rejected: the page says that they do not
look like a digit, shows no bar at 100 %, and offers "Wrong?" with no "Not a digit" to
choose. A number and a rejected drawing are corrected, and the corrections stored.

The digits are `tests/drawing.py`'s pen paths, drawn side by side with gaps at a size that
fits the pad, the way a person writes a number across it.

The test run saves a screenshot of the page reading a number to a temporary folder; to
refresh the README's `docs/page-number.png`, run with
`DIGITS_NUMBER_SCREENSHOT=docs/page-number.png` (a path relative to the repository, or
absolute).

The page, its drawing helpers and the browser fixtures are test_page.py's.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import RunningServer
from tests.drawing import DIGIT_PATHS, encode
from tests.drawing import draw_strokes as render_strokes
from tests.test_page import (  # noqa: F401 (browser, playwright, desktop, phone are fixtures)
    DESKTOP_VIEWPORT,
    PHONE,
    ROOT,
    Point,
    Watch,
    browser,
    canvas_size,
    desktop,
    expect_ink_is_the_drawing,
    mouse_stroke,
    open_page,
    phone,
    playwright,
    server_hello,
    settle,
    touch_stroke,
)
from tests.test_page_corrections import ADMIN_TOKEN, exported

pytestmark = pytest.mark.browser

SCREENSHOT_VARIABLE = "DIGITS_NUMBER_SCREENSHOT"
# A digit is this much as wide as it is tall, and this much of its height lies between two.
DIGIT_ASPECT = 0.7
GAP_FRACTION = 0.4
# The number takes at most this much of the pad's width and of its height.
NUMBER_WIDTH_FRACTION = 0.9
NUMBER_HEIGHT_FRACTION = 0.55
# A pen sample every this many CSS pixels, about what pointer events give at a steady pace.
SAMPLE_PX = 7.0
NUMBER_ANNOUNCEMENT = r"^Reads {text}, \d+ % sure$"
NOT_A_DIGIT = "This does not look like a digit"

Stroke = Callable[..., None]


# Drawing numbers and other things.

def resampled(points: list[Point], step: float) -> list[Point]:
    """The polyline through these points, with a point every `step` (in their units) or less."""
    result = [points[0]]
    for start, end in itertools.pairwise(points):
        count = max(1, math.ceil(math.dist(start, end) / step))
        result += [
            (start[0] + (end[0] - start[0]) * i / count, start[1] + (end[1] - start[1]) * i / count)
            for i in range(1, count + 1)
        ]
    return result


def number_strokes(text: str, width: int, height: int) -> list[list[list[Point]]]:
    """Each digit's pen strokes, in fractions of the whole pad, side by side with gaps.

    The digits are as tall as fits both the pad's height and its width, centred on it.
    """
    count = len(text)
    advance = DIGIT_ASPECT + GAP_FRACTION
    size = min(
        NUMBER_HEIGHT_FRACTION * height,
        NUMBER_WIDTH_FRACTION * width / (count * advance - GAP_FRACTION),
    )
    left = (width - size * (count * advance - GAP_FRACTION)) / 2
    top = (height - size) / 2
    digits = []
    for index, character in enumerate(text):
        x0 = left + index * advance * size
        strokes = []
        for path in DIGIT_PATHS[int(character)]:
            # The unit box is square; a handwritten digit is narrower than tall.
            pixels = [(x0 + x * DIGIT_ASPECT * size, top + y * size) for x, y in path]
            strokes.append([(x / width, y / height) for x, y in resampled(pixels, SAMPLE_PX)])
        digits.append(strokes)
    return digits


def digit_boxes(
    digits: list[list[list[Point]]], width: int, height: int
) -> list[tuple[float, ...]]:
    """The box of each digit's strokes in pad pixels, without the pen."""
    boxes = []
    for strokes in digits:
        xs = [x * width for stroke in strokes for x, _ in stroke]
        ys = [y * height for stroke in strokes for _, y in stroke]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return boxes


# Not digits, in fractions of a box in the middle of the pad, as pen strokes.
LETTER_A: list[list[Point]] = [
    [(0.15, 0.95), (0.5, 0.05), (0.85, 0.95)],
    [(0.3, 0.6), (0.7, 0.6)],
]
# Two crossing strokes, each a good 1 alone.
LETTER_X: list[list[Point]] = [[(0.15, 0.05), (0.85, 0.95)], [(0.85, 0.05), (0.15, 0.95)]]
SCRIBBLE: list[list[Point]] = [
    [(0.1 + 0.8 * ((step * 0.37) % 1), 0.1 + 0.8 * ((step * 0.61) % 1)) for step in range(25)]
]
SHAPES = {"letter A": LETTER_A, "letter X": LETTER_X, "scribble": SCRIBBLE}


def shape_strokes(shape: list[list[Point]], width: int, height: int) -> list[list[Point]]:
    """A shape drawn over 60 % of the pad's height, centred, in fractions of the whole pad."""
    size = 0.6 * min(width, height)
    left, top = (width - size) / 2, (height - size) / 2
    return [
        [(x / width, y / height) for x, y in resampled(
            [(left + x * size, top + y * size) for x, y in stroke], SAMPLE_PX
        )]
        for stroke in shape
    ]


def draw_strokes(watch: Watch, strokes: list[list[Point]], stroke: Stroke) -> dict[str, Any]:
    """Draw these strokes (fractions of the whole pad); return the answer to the last one."""
    for points in strokes:
        stroke(watch.page, points, lambda: None, whole=True)
    settle(watch)
    final: dict[str, Any] = watch.connection.predictions[-1]
    return final


# What the page shows.

def shown_reading(page: Page) -> str:
    """The reading the page shows: the big digit, or the characters of the number's buttons."""
    state = page.locator("[data-role=answer]").get_attribute("data-state")
    if state == "prediction":
        return page.locator("[data-role=digit]").inner_text().strip()
    characters = page.locator("[data-role=number] [data-role=character]").all_inner_texts()
    return "".join(character.strip() for character in characters)


def bar_heights(page: Page) -> list[float]:
    """The ten bars' heights as fractions of a full bar (their --probability)."""
    values: list[str] = page.locator("[data-role=bars] li").evaluate_all(
        "all => all.map(li => li.style.getPropertyValue('--probability') || '0')"
    )
    return [float(value) for value in values]


def expect_number(page: Page, text: str) -> None:
    """The page shows and announces this number, one button per digit, and no big digit."""
    answer = page.locator("[data-role=answer]")
    expect(answer).to_have_attribute("data-state", "number")
    expect(answer).to_have_attribute("data-reading", text)
    expect(page.locator("[data-role=digit]")).to_be_hidden()
    buttons = page.locator("[data-role=number] button[data-action=show-digit]")
    expect(buttons).to_have_count(len(text))
    for index, character in enumerate(text):
        expect(buttons.nth(index)).to_be_visible()
        expect(buttons.nth(index).locator("[data-role=character]")).to_have_text(character)
        expect(buttons.nth(index).locator("[data-role=piece-confidence]")).to_have_text(
            re.compile(r"^\d+ %$")
        )
    expect(page.locator("[data-role=confidence]")).to_have_text(re.compile(r"^\d+ % sure$"))
    expect(page.locator("[data-role=announcer]")).to_have_text(
        re.compile(NUMBER_ANNOUNCEMENT.format(text=text))
    )


def expect_rejected(page: Page) -> None:
    """The page says plainly that this is not a digit, and no bar stands at 100 %."""
    answer = page.locator("[data-role=answer]")
    expect(answer).to_have_attribute("data-state", "rejected")
    expect(page.locator("[data-role=confidence]")).to_have_text(NOT_A_DIGIT)
    expect(page.locator("[data-role=confidence]")).to_be_visible()
    expect(page.locator("[data-role=announcer]")).to_have_text(NOT_A_DIGIT)
    expect(page.get_by_text("Draw a digit or a number", exact=True)).to_be_hidden()
    expect(page.locator("[data-role=digit]")).to_be_hidden()
    expect(page.locator("[data-role=bars] li.winner")).to_have_count(0)
    heights = bar_heights(page)
    assert all(0.0 <= height < 0.995 for height in heights), heights
    values = page.locator("[data-role=bars] [data-role=value]").all_inner_texts()
    assert "100 %" not in values, values


def expect_outlines(page: Page, answer: dict[str, Any]) -> None:
    """Each piece of the answer's number is outlined over the pad, at its box, in pad pixels."""
    overlay = page.locator("svg[data-role=pieces]")
    width, height = canvas_size(page)
    expect(overlay).to_have_attribute("viewBox", f"0 0 {width} {height}")
    pieces = answer["number"]["digits"]
    rectangles = overlay.locator("rect")
    expect(rectangles).to_have_count(len(pieces))
    drawn = rectangles.evaluate_all(
        "all => all.map(r => ['x', 'y', 'width', 'height'].map(a => Number(r.getAttribute(a))))"
    )
    for (x, y, box_width, box_height), piece in zip(drawn, pieces, strict=True):
        x0, y0, x1, y1 = piece["box"]
        assert [x, y, box_width, box_height] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    # Over the pad, the same size, and never in the way of the pen.
    pad = page.locator("canvas[data-role=pad]").bounding_box()
    over = overlay.bounding_box()
    assert pad is not None and over is not None
    assert over == pytest.approx(pad, abs=1.0)
    assert overlay.evaluate("svg => getComputedStyle(svg).pointerEvents") == "none"


# The tests.

@pytest.mark.parametrize(
    ("device", "text"), [("desktop", "2026"), ("phone", "4517")], ids=["mouse", "finger"]
)
def test_a_number_grows_digit_by_digit_and_ends_right(
    device: str, text: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Drawn digit by digit, the number reads "2", "20", "202", "2026", each digit a button."""
    watch: Watch = request.getfixturevalue(device)
    page = watch.page
    finger = device == "phone"
    stroke: Stroke = touch_stroke if finger else mouse_stroke
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    width, height = canvas_size(page)
    digits = number_strokes(text, width, height)

    readings = []
    for count, strokes in enumerate(digits, start=1):
        answer = draw_strokes(watch, strokes, stroke)
        prefix = text[:count]
        assert answer["number"]["text"] == prefix, answer["number"]
        if count == 1:
            assert answer["digit"] == int(prefix), answer
        else:
            assert answer["digit"] is None and answer["confidence"] is None, answer
            expect_number(page, prefix)
        expect(page.locator("[data-role=answer]")).to_have_attribute("data-reading", prefix)
        readings.append(shown_reading(page))
    assert readings == [text[:count] for count in range(1, len(text) + 1)]

    final = watch.connection.predictions[-1]
    hello = server_hello(watch)
    assert final["not_digit"] >= hello["not_digit_threshold"]
    assert final["number"]["confidence"] == pytest.approx(
        math.prod(piece["confidence"] for piece in final["number"]["digits"]), rel=1e-6
    )
    # Each piece's box holds the digit drawn there, left to right.
    for box, drawn in zip(
        [piece["box"] for piece in final["number"]["digits"]],
        digit_boxes(digits, width, height),
        strict=True,
    ):
        middle = ((drawn[0] + drawn[2]) / 2, (drawn[1] + drawn[3]) / 2)
        assert box[0] <= middle[0] <= box[2] and box[1] <= middle[1] <= box[3], (box, drawn)
    expect_outlines(page, final)
    # The outlines are no ink: what the server holds is exactly the strokes drawn.
    expect_ink_is_the_drawing(page, watch.connection)
    # The picture the model saw is one digit's business.
    expect(page.locator("canvas[data-role=seen]")).to_be_hidden()

    # A press on the third digit shows its ten bars; another hides them.
    third = page.locator("[data-role=number] button").nth(2)
    bars_caption = page.locator("[data-role=bars-caption]")
    expect(bars_caption).to_contain_text("Choose a digit")
    assert max(bar_heights(page)) == 0.0
    if finger:
        third.tap()
    else:
        third.click()
    expect(third).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-role=bars] li.winner")).to_have_attribute("data-digit", text[2])
    expect(bars_caption).to_contain_text(f"Digit 3 of {len(text)}, read as {text[2]}")
    piece = final["number"]["digits"][2]
    assert bar_heights(page) == pytest.approx(piece["probabilities"], abs=1e-6)
    expect(page.locator("svg[data-role=pieces] rect.selected")).to_have_attribute(
        "data-index", "2"
    )
    if not finger:
        screenshot = ROOT / (os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "page-number.png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, animations="disabled", full_page=True)
        assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if finger:
        third.tap()
    else:
        third.click()
    expect(third).to_have_attribute("aria-pressed", "false")
    expect(page.locator("[data-role=bars] li.winner")).to_have_count(0)
    expect(page.locator("svg[data-role=pieces] rect.selected")).to_have_count(0)

    # Wider than the phone nothing is, the number's buttons included.
    viewport = page.viewport_size
    assert viewport is not None
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]


def test_the_digits_of_a_number_are_buttons_for_the_keyboard(desktop: Watch) -> None:  # noqa: F811
    """Tab reaches each digit of the number; Enter and Space show and hide its bars."""
    page = desktop.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    width, height = canvas_size(page)
    for strokes in number_strokes("316", width, height):
        draw_strokes(desktop, strokes, mouse_stroke)
    expect_number(page, "316")
    buttons = page.locator("[data-role=number] button")

    page.locator("[data-role=upload]").focus()
    page.keyboard.press("Tab")
    expect(buttons.nth(0)).to_be_focused()
    expect(buttons.nth(0)).to_have_accessible_name(re.compile(r"^3, \d+ % sure$"))
    page.keyboard.press("Tab")
    expect(buttons.nth(1)).to_be_focused()
    page.keyboard.press("Enter")
    expect(buttons.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-role=bars] li.winner")).to_have_attribute("data-digit", "1")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    expect(buttons.nth(1)).to_have_attribute("aria-pressed", "false")
    expect(buttons.nth(2)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-role=bars] li.winner")).to_have_attribute("data-digit", "6")
    page.keyboard.press("Space")
    expect(buttons.nth(2)).to_have_attribute("aria-pressed", "false")
    # Escape still clears the drawing, and the number, its buttons and outlines go.
    page.keyboard.press("Escape")
    expect(page.locator("[data-role=answer]")).to_have_attribute("data-state", "empty")
    expect(buttons).to_have_count(0)
    expect(page.locator("svg[data-role=pieces] rect")).to_have_count(0)


@pytest.mark.parametrize(
    ("device", "shape"),
    [("desktop", "letter A"), ("desktop", "letter X"), ("desktop", "scribble"),
     ("phone", "letter A"), ("phone", "letter X")],
)
def test_a_letter_or_a_scribble_is_not_a_digit(
    device: str, shape: str, request: pytest.FixtureRequest
) -> None:
    """An "A", an "X" or a scribble: digit null, "does not look like a digit", no bar at
    100 %."""
    watch: Watch = request.getfixturevalue(device)
    page = watch.page
    stroke: Stroke = touch_stroke if device == "phone" else mouse_stroke
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    width, height = canvas_size(page)
    strokes = shape_strokes(SHAPES[shape], width, height)
    answer = draw_strokes(watch, strokes, stroke)

    assert answer["digit"] is None and answer["confidence"] is None, answer
    assert answer["empty"] is False and answer["probabilities"] is not None
    hello = server_hello(watch)
    assert answer["not_digit"] >= hello["not_digit_threshold"], answer["not_digit"]
    assert re.fullmatch(r"\?+", answer["number"]["text"]), answer["number"]
    expect_rejected(page)
    # Each bar is the model's chance of that digit: its share times 1 - not_digit.
    scaled = [p * (1 - answer["not_digit"]) for p in answer["probabilities"]]
    assert bar_heights(page) == pytest.approx(scaled, abs=1e-6)
    expect(page.locator("[data-role=bars-caption]")).to_contain_text("Not a digit")
    expect_outlines(page, answer)
    expect_ink_is_the_drawing(page, watch.connection)

    # "Wrong?" is offered, and it asks what digits it is: "not a digit" is what was said.
    wrong = page.locator("[data-action=wrong]")
    expect(wrong).to_be_visible()
    wrong.click()
    expect(page.locator("[data-role=correction-form]")).to_be_visible()
    expect(page.locator("[data-action=correct-as][data-label='4']")).to_be_visible()
    expect(page.locator("[data-action=correct-as][data-label=not_digit]")).to_be_hidden()


def test_an_uploaded_picture_of_a_number_is_read(desktop: Watch) -> None:  # noqa: F811
    """An uploaded number is read and shown as one, without outlines in another picture's pixels."""
    page = desktop.page
    width, height = 560, 240
    digits = number_strokes("37", width, height)
    picture = render_strokes(
        [[(x * width, y * height) for x, y in stroke] for strokes in digits for stroke in strokes],
        width,
        height,
        line_width=height / 20,
        supersampling=2,
    )
    with page.expect_response(lambda response: "/api/predict" in response.url) as predicted:
        page.locator("input[type=file]").set_input_files(
            {"name": "number.png", "mimeType": "image/png", "buffer": encode(picture)}
        )
    answer = predicted.value.json()
    assert answer["number"]["text"] == "37", answer["number"]
    expect_number(page, "37")
    expect(page.locator("[data-role=source]")).to_have_text("Uploaded number.png")
    expect(page.locator("svg[data-role=pieces] rect")).to_have_count(0)


# Corrections of a number and of a rejected drawing.

@pytest.fixture
def admin_desktop(
    browser: Browser,  # noqa: F811
    server_factory: Callable[..., RunningServer],
) -> Iterator[tuple[Watch, RunningServer]]:
    """The page in a desktop window, on a server whose corrections the test may read."""
    server = server_factory("--admin-token", ADMIN_TOKEN)
    context = browser.new_context(viewport=DESKTOP_VIEWPORT)
    for watch in open_page(context, server):
        yield watch, server


def test_a_number_and_a_rejected_drawing_are_corrected(
    admin_desktop: tuple[Watch, RunningServer],
) -> None:
    """A number is corrected by typing its digits; a rejected drawing by the digit it is."""
    watch, server = admin_desktop
    page = watch.page
    expect(page.locator("[data-role=status]")).to_have_attribute("data-state", "live")
    width, height = canvas_size(page)
    for strokes in number_strokes("123", width, height):
        draw_strokes(watch, strokes, mouse_stroke)
    expect_number(page, "123")

    page.locator("[data-action=wrong]").click()
    number_field = page.locator("[data-role=correction-number]")
    # A number is corrected by typing it: the field has the focus.
    expect(number_field).to_be_focused()
    page.keyboard.type("128")
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=correction-status]")).to_have_attribute("data-state", "stored")
    [correction] = exported(server)
    assert correction["label"] == "128"
    assert correction["answer"]["digit"] is None
    assert correction["answer"]["number"]["text"] == "123"
    assert len(correction["ink"]["strokes"]) == 3
    expect_number(page, "123")

    page.keyboard.press("Escape")
    expect(page.locator("[data-role=answer]")).to_have_attribute("data-state", "empty")
    draw_strokes(watch, shape_strokes(LETTER_A, width, height), mouse_stroke)
    expect_rejected(page)
    page.locator("[data-action=wrong]").click()
    expect(page.locator("[data-action=correct-as][data-label='0']")).to_be_focused()
    page.locator("[data-action=correct-as][data-label='4']").click()
    expect(page.locator("[data-role=correction-status]")).to_have_attribute("data-state", "stored")
    labels = [correction["label"] for correction in exported(server)]
    assert labels == ["128", "4"]
    assert exported(server)[1]["answer"]["digit"] is None
    # The page still says what it said.
    expect_rejected(page)
