"""The HTTP side of `python -m server`, against a real server process on a free port."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, ImageOps

from model import METRICS_PATH
from server.config import MIB, WEB_DIR
from tests.conftest import TIMEOUT_S, RunningServer
from tests.drawing import encode
from tests.pictures import blank_png, bomb_png, data_url, digit_image, digit_png
from tests.predictions import EMPTY, assert_prediction_object

PNG = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client for the shared server."""
    with httpx.Client(base_url=server.http_url, timeout=TIMEOUT_S) as http:
        yield http


def json_answer(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response, checking its status and content type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def assert_prediction(answer: dict[str, Any]) -> None:
    """The answer is a prediction object with ink (the v2 object)."""
    assert_prediction_object(answer)


def assert_still_serving(client: httpx.Client) -> None:
    """A good picture is still answered, and `/healthz` is ok."""
    assert_prediction(json_answer(client.post("/api/predict", content=digit_png(7), headers=PNG)))
    assert json_answer(client.get("/healthz")) == {"status": "ok"}


def test_healthz(client: httpx.Client) -> None:
    """`/healthz` answers ok."""
    assert json_answer(client.get("/healthz")) == {"status": "ok"}


def test_readyz_once_the_model_is_loaded(client: httpx.Client) -> None:
    """`/readyz` answers 200 on a started server (the fixture waited for it)."""
    assert client.get("/readyz").status_code == 200


def test_page_is_served_with_a_canvas(client: httpx.Client) -> None:
    """`GET /` is the HTML page with a canvas, revalidated on every visit."""
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<canvas" in response.text
    assert response.headers["cache-control"] == "no-cache"
    assert "expires" not in response.headers
    assert "etag" in response.headers


def test_page_files_are_static(client: httpx.Client) -> None:
    """Every other file under web/ is served; a conditional request gets 304."""
    files = [path for path in WEB_DIR.rglob("*") if path.is_file()]
    for path in files:
        name = path.relative_to(WEB_DIR).as_posix()
        response = client.get(f"/{name}")
        assert response.status_code == 200, name
        assert response.content == path.read_bytes()
        assert "cache-control" in response.headers
        again = client.get(f"/{name}", headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304, name


def test_missing_files_and_traversal_are_not_found(client: httpx.Client) -> None:
    """Unknown files, and paths escaping web/, are 404."""
    assert client.get("/no-such-file.js").status_code == 404
    assert client.get("/%2e%2e/server/app.py").status_code == 404
    assert client.get("/..%2fserver%2fapp.py").status_code == 404


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    """`/metrics` is Prometheus text with the server's metrics."""
    client.post("/api/predict", content=digit_png(1), headers=PNG)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in (
        "digits_open_connections",
        "digits_snapshots_received_total",
        "digits_snapshots_coalesced_total",
        "digits_predictions_sent_total",
        "digits_inference_batch_size_bucket",
        "digits_inference_seconds_bucket",
        "digits_errors_total",
    ):
        assert name in response.text
    sent = re.search(r'digits_predictions_sent_total\{transport="http"\} (\S+)', response.text)
    assert sent is not None and float(sent.group(1)) >= 1


def test_model_description(client: httpx.Client) -> None:
    """`/api/model` gives the name, version and test accuracy `model/metrics.json` states."""
    stated = json.loads(METRICS_PATH.read_text())
    answer = json_answer(client.get("/api/model"))
    # Not merely a fraction: 0.0 is what a server that could not read metrics.json says.
    assert answer["test_accuracy"] == stated["test_accuracy"]
    assert answer["name"] == stated["name"]
    assert answer["version"] == stated["version"]
    assert answer["input"] == [28, 28, 1]
    assert answer["classes"] == list(range(10))


@pytest.mark.parametrize("digit", [0, 1, 7])
def test_drawn_digit_is_read(client: httpx.Client, digit: int) -> None:
    """A drawn digit posted as PNG comes back as that digit."""
    answer = json_answer(client.post("/api/predict", content=digit_png(digit), headers=PNG))
    assert_prediction(answer)
    assert answer["digit"] == digit
    assert "input_png" not in answer


def test_every_body_form_gives_the_same_answer(client: httpx.Client) -> None:
    """Raw bytes, multipart, a JSON data URL and JSON bare base64 give identical answers."""
    png = digit_png(7)
    answers = [
        json_answer(client.post("/api/predict", content=png, headers=PNG)),
        json_answer(client.post("/api/predict", files={"image": ("seven.png", png, "image/png")})),
        json_answer(client.post("/api/predict", json={"image": data_url(png)})),
        json_answer(client.post("/api/predict", json={"image": base64.b64encode(png).decode()})),
    ]
    assert all(answer == answers[0] for answer in answers)


@pytest.mark.parametrize(
    ("format_name", "media_type"),
    [("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif"), ("BMP", "image/bmp")],
)
def test_other_browser_formats_are_read(
    client: httpx.Client, format_name: str, media_type: str
) -> None:
    """JPEG, WebP, GIF and BMP uploads are read like PNG."""
    picture = digit_image(7).convert("RGB")
    response = client.post(
        "/api/predict", content=encode(picture, format_name), headers={"Content-Type": media_type}
    )
    answer = json_answer(response)
    assert_prediction(answer)
    assert answer["digit"] == 7


def test_light_ink_on_dark_paper_is_read(client: httpx.Client) -> None:
    """Both polarities are accepted: white ink on black reads as the same digit."""
    inverted = encode(ImageOps.invert(digit_image(7)))
    answer = json_answer(client.post("/api/predict", content=inverted, headers=PNG))
    assert answer["digit"] == 7


@pytest.mark.parametrize("transparent", [False, True], ids=["white", "transparent"])
def test_empty_canvas_is_empty(client: httpx.Client, transparent: bool) -> None:
    """A blank or untouched transparent canvas answers empty, with nulls."""
    answer = json_answer(
        client.post("/api/predict", content=blank_png(transparent), headers=PNG)
    )
    assert answer == EMPTY
    assert_still_serving(client)


@pytest.mark.parametrize(
    ("mode", "colour"),
    [("L", 255), ("L", 0), ("RGBA", (0, 0, 0, 0))],
    ids=["white", "black", "transparent"],
)
def test_one_pixel_picture_is_accepted(
    client: httpx.Client, mode: str, colour: int | tuple[int, ...]
) -> None:
    """A 1x1 picture is accepted, and answered empty: one colour is paper with no ink.

    Ink is what differs from the paper, in either polarity, so a picture of a single colour,
    white or black, is as blank as an untouched transparent canvas.
    """
    one_pixel = encode(Image.new(mode, (1, 1), colour))
    answer = json_answer(client.post("/api/predict", content=one_pixel, headers=PNG))
    assert answer["empty"] is True, answer
    assert answer["digit"] is None and answer["confidence"] is None
    assert answer["probabilities"] is None


def test_include_input_adds_the_model_input(client: httpx.Client) -> None:
    """`?include_input=1` adds the 28x28 input the model saw as a PNG data URL."""
    response = client.post("/api/predict?include_input=1", content=digit_png(1), headers=PNG)
    answer = json_answer(response)
    prefix = "data:image/png;base64,"
    assert answer["input_png"].startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(answer["input_png"][len(prefix) :]))) as seen:
        assert seen.format == "PNG" and seen.size == (28, 28)
        assert seen.getextrema()[1] > 200  # the digit's ink is there


def test_include_input_on_an_empty_canvas_is_blank(client: httpx.Client) -> None:
    """An empty canvas with `include_input=1` carries an all-blank 28x28 input."""
    response = client.post("/api/predict?include_input=1", content=blank_png(), headers=PNG)
    answer = json_answer(response)
    assert answer["empty"] is True
    data = base64.b64decode(answer["input_png"].partition(",")[2])
    with Image.open(io.BytesIO(data)) as seen:
        assert seen.size == (28, 28) and seen.getextrema() == (0, 0)


def multipart_without_image() -> dict[str, Any]:
    return {"files": {"picture": ("seven.png", digit_png(7), "image/png")}}


# (request arguments, status, code) for each refused upload.
REFUSALS: dict[str, tuple[dict[str, Any], int, str]] = {
    "no-content-type": ({"content": digit_png(7)}, 415, "unsupported_media_type"),
    "text-plain": (
        {"content": b"7", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"
    ),
    "tiff": (
        {"content": b"II*\x00", "headers": {"Content-Type": "image/tiff"}},
        415,
        "unsupported_media_type",
    ),
    "json-not-json": (
        {"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 400, "bad_request"
    ),
    "json-array": ({"json": [1, 2]}, 400, "bad_request"),
    "json-without-image": ({"json": {"picture": "x"}}, 400, "bad_request"),
    "json-image-not-string": ({"json": {"image": 7}}, 400, "bad_request"),
    "multipart-without-image": (multipart_without_image(), 400, "bad_request"),
    "non-image-bytes": ({"content": b"hello, world", "headers": PNG}, 400, "bad_image"),
    "truncated-png": ({"content": digit_png(7)[:150], "headers": PNG}, 400, "bad_image"),
    "empty-body": ({"content": b"", "headers": PNG}, 400, "bad_image"),
    "invalid-base64": ({"json": {"image": "data:image/png;base64,@@@@"}}, 400, "bad_image"),
    "base64-of-garbage": ({"json": {"image": "aGVsbG8="}}, 400, "bad_image"),
    "bomb-20000": ({"content": bomb_png(), "headers": PNG}, 413, "too_large"),
    "bomb-5000": ({"content": bomb_png(5_000, 5_000), "headers": PNG}, 413, "too_large"),
    "bomb-in-json": ({"json": {"image": data_url(bomb_png())}}, 413, "too_large"),
    "bytes-over-limit": ({"content": b"\x89PNG" + bytes(MIB), "headers": PNG}, 413, "too_large"),
    "body-far-over-limit": ({"content": bytes(3 * MIB), "headers": PNG}, 413, "too_large"),
    "json-decoded-over-limit": (
        {"json": {"image": base64.b64encode(bytes(MIB + 3)).decode()}}, 413, "too_large"
    ),
    "multipart-over-limit": (
        {"files": {"image": ("big.png", bytes(MIB + 1), "image/png")}}, 413, "too_large"
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_upload_then_still_serving(client: httpx.Client, case: str) -> None:
    """Each bad upload gets its JSON error and status; the server keeps answering."""
    arguments, status, code = REFUSALS[case]
    answer = json_answer(client.post("/api/predict", **arguments), status)
    assert answer["error"]["code"] == code
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert_still_serving(client)


def test_api_errors_are_json(client: httpx.Client) -> None:
    """Unknown API routes and wrong methods answer JSON errors too."""
    assert json_answer(client.get("/api/nothing"), 404)["error"]["code"] == "not_found"
    wrong_method = json_answer(client.post("/api/model"), 405)
    assert wrong_method["error"]["code"] == "method_not_allowed"


def test_errors_are_counted_by_code(client: httpx.Client) -> None:
    """Refused uploads show up in the error counter under their code."""
    client.post("/api/predict", content=b"garbage", headers=PNG)
    text = client.get("/metrics").text
    counted = re.search(r'digits_errors_total\{code="bad_image",transport="http"\} (\S+)', text)
    assert counted is not None and float(counted.group(1)) >= 1
    assert json.loads(client.get("/healthz").text) == {"status": "ok"}
