"""Decoding untrusted pictures within limits."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from server.images import ImageError, decode_text, open_image
from server.png import grey_png
from server.predictions import input_png
from tests.pictures import bomb_png, data_url, digit_png

MAX_PIXELS = 4096 * 4096


def refusal_code(data: bytes, max_pixels: int = MAX_PIXELS) -> str:
    with pytest.raises(ImageError) as caught:
        open_image(data, max_pixels)
    return caught.value.code


def encoded(image: Image.Image, format_name: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name)
    return buffer.getvalue()


def test_data_url_and_bare_base64_decode_alike() -> None:
    """A data URL and bare base64 of the same bytes decode to those bytes."""
    png = digit_png(7)
    assert decode_text(data_url(png), 10**6) == png
    assert decode_text(base64.b64encode(png).decode(), 10**6) == png


@pytest.mark.parametrize(
    "text", ["not base64!", "data:image/png,raw", "data:image/png;base64", "QUJDR"],
    ids=["alphabet", "not-base64-url", "no-comma", "padding"],
)
def test_invalid_base64_is_a_bad_image(text: str) -> None:
    """Text that is not valid base64 (or a base64 data URL) is `bad_image`."""
    with pytest.raises(ImageError) as caught:
        decode_text(text, 10**6)
    assert caught.value.code == "bad_image"


def test_decoded_bytes_over_the_limit_are_too_large() -> None:
    """Base64 decoding to more than the byte limit is `too_large`, before or after decoding."""
    with pytest.raises(ImageError) as caught:
        decode_text(base64.b64encode(b"x" * 101).decode(), 100)
    assert caught.value.code == "too_large"
    with pytest.raises(ImageError) as caught:
        decode_text("A" * 10_000, 100)
    assert caught.value.code == "too_large"


@pytest.mark.parametrize("format_name", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_browser_formats_open(format_name: str) -> None:
    """PNG, JPEG, WebP, GIF and BMP pictures decode."""
    picture = Image.new("RGB", (40, 30), "white")
    image = open_image(encoded(picture, format_name), MAX_PIXELS)
    assert image.size == (40, 30)


def test_other_formats_are_refused() -> None:
    """A TIFF (a format no browser sends) is `bad_image`: rarer plugins never see input."""
    assert refusal_code(encoded(Image.new("L", (8, 8)), "TIFF")) == "bad_image"


@pytest.mark.parametrize(
    "data", [b"", b"hello, world", digit_png(1)[:100], digit_png(1)[:-30]],
    ids=["empty", "text", "truncated-header", "truncated-data"],
)
def test_undecodable_bytes_are_bad_images(data: bytes) -> None:
    """Empty, non-image and truncated bytes are `bad_image`."""
    assert refusal_code(data) == "bad_image"


@pytest.mark.parametrize("side", [5_000, 10_000, 20_000])
def test_declared_size_over_the_limit_is_too_large(side: int) -> None:
    """A tiny file declaring a huge picture is `too_large`, under and over Pillow's own limit."""
    bomb = bomb_png(side, side)
    assert len(bomb) < 100_000
    assert refusal_code(bomb) == "too_large"


def test_pixel_limit_is_inclusive() -> None:
    """A picture of exactly max_pixels opens; one pixel fewer allowed refuses it."""
    png = encoded(Image.new("L", (10, 10), 255), "PNG")
    assert open_image(png, 100).size == (10, 10)
    assert refusal_code(png, 99) == "too_large"


def test_large_jpeg_decodes_reduced() -> None:
    """A large JPEG is decoded at a reduced scale (draft mode), not at full size."""
    jpeg = encoded(Image.new("RGB", (4000, 2000), "white"), "JPEG")
    width, height = open_image(jpeg, MAX_PIXELS).size
    assert width < 4000 and height < 2000


@pytest.mark.parametrize("shape", [(28, 28), (1, 1), (3, 40)])
def test_the_input_png_is_a_greyscale_png_of_exactly_its_pixels(shape: tuple[int, int]) -> None:
    """`grey_png` (the input PNG, written without Pillow) is read back by Pillow exactly."""
    pixels = np.random.default_rng(7).integers(0, 256, size=shape, dtype=np.uint8)
    with Image.open(io.BytesIO(grey_png(pixels))) as image:
        image.load()
        assert image.format == "PNG" and image.mode == "L"
        assert np.array_equal(np.asarray(image), pixels)
    model_input = pixels.astype(np.float32) / 255.0 if shape == (28, 28) else None
    url = input_png(model_input)
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        expected = pixels if shape == (28, 28) else np.zeros((28, 28), np.uint8)
        assert np.array_equal(np.asarray(image), expected)
