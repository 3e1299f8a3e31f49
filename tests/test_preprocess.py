"""Preprocessing: any picture of a digit becomes the MNIST-like 28x28 input, or None if blank."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from model.preprocess import centre_by_mass, ink_map, ink_to_model_input, to_model_input
from tests.drawing import draw_digit, encode


def model_input(picture: Image.Image) -> NDArray[np.float32]:
    """Preprocess a picture that has ink."""
    result = to_model_input(picture)
    assert result is not None, "a picture with a digit was taken for empty"
    return result


def difference(first: NDArray[np.float32], second: NDArray[np.float32]) -> float:
    """Mean absolute difference of two model inputs (0 = identical, ink covers ~20 %)."""
    return float(np.abs(first - second).mean())


@pytest.fixture(scope="module")
def reference() -> NDArray[np.float32]:
    """A 7 drawn black on white, the way the page draws it."""
    return model_input(draw_digit(7))


def test_output_is_mnist_shaped(reference: NDArray[np.float32]) -> None:
    """The input is 28x28 float32 in [0, 1], peak 1, inside a 20x20 box, mass centred at 14."""
    assert reference.shape == (28, 28) and reference.dtype == np.float32
    assert reference.min() >= 0.0 and reference.max() == pytest.approx(1.0)
    rows = np.flatnonzero(reference.any(axis=1))
    columns = np.flatnonzero(reference.any(axis=0))
    assert max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1) <= 21
    centre = ndimage.center_of_mass(reference)
    assert centre == pytest.approx((14.0, 14.0), abs=0.6)


@pytest.mark.parametrize("box", [(10, 10, 120), (600, 650, 300), (100, 400, 500), (0, 0, 999)])
def test_translation_and_scale_invariance_on_a_large_canvas(
    box: tuple[int, int, int], reference: NDArray[np.float32]
) -> None:
    """A digit anywhere on a 1000 px canvas, at any size, gives the same input."""
    left, top, size = box
    picture = draw_digit(7, canvas=(1000, 1000), box=(left, top, size), line_width=size / 10)
    assert difference(model_input(picture), reference) < 0.04


def test_polarity_is_decided_from_the_background(reference: NDArray[np.float32]) -> None:
    """Light ink on dark paper gives the same input as dark ink on light paper."""
    inverted = draw_digit(7, ink=(255, 255, 255), paper=(0, 0, 0))
    assert difference(model_input(inverted), reference) < 0.01


def test_transparent_canvas_does_not_turn_black(reference: NDArray[np.float32]) -> None:
    """A toDataURL PNG (black ink on transparent black) is composited onto white first."""
    picture = draw_digit(7, ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    decoded = Image.open(io.BytesIO(encode(picture)))
    assert difference(model_input(decoded), reference) < 0.01


@pytest.mark.parametrize(
    ("mode", "ink", "paper"),
    [
        ("RGBA", (20, 20, 200, 255), (255, 255, 255, 0)),
        ("LA", (0, 255), (0, 0)),
        ("L", (0,), (255,)),
        ("RGB", (0, 0, 0), (250, 250, 250)),
        ("1", (0,), (1,)),
        ("CMYK", (0, 0, 0, 255), (0, 0, 0, 0)),
    ],
)
def test_every_mode(
    mode: str, ink: tuple[int, ...], paper: tuple[int, ...], reference: NDArray[np.float32]
) -> None:
    """Each Pillow mode with ink gives the reference input."""
    picture = draw_digit(7, ink=ink, paper=paper, mode=mode)
    assert difference(model_input(picture), reference) < 0.03


def test_palette_with_transparency(reference: NDArray[np.float32]) -> None:
    """A P-mode GIF/PNG whose background is the transparent palette entry."""
    picture = draw_digit(7, ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    palette = picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    transparent_index = palette.getpixel((0, 0))
    decoded = Image.open(io.BytesIO(encode(palette, "PNG", transparency=transparent_index)))
    assert decoded.mode == "P" and "transparency" in decoded.info
    assert difference(model_input(decoded), reference) < 0.03


def test_sixteen_bit_greyscale(reference: NDArray[np.float32]) -> None:
    """An I;16 picture (a scanner's 16-bit grey) uses its full 0..65535 range."""
    grey = np.asarray(draw_digit(7, mode="L"), dtype=np.uint16) * 257
    picture = Image.fromarray(grey)
    assert picture.mode == "I;16"
    assert difference(model_input(picture), reference) < 0.03


def test_coloured_ink_on_coloured_paper_of_equal_brightness(reference: NDArray[np.float32]) -> None:
    """Red ink on green paper of the same luminance still shows the digit."""
    picture = draw_digit(7, ink=(200, 60, 60), paper=(60, 140, 60))
    assert difference(model_input(picture), reference) < 0.03


def test_jpeg_noise_is_ignored(reference: NDArray[np.float32]) -> None:
    """A low-quality JPEG gives nearly the reference input, and a blank JPEG is empty."""
    noisy = Image.open(io.BytesIO(encode(draw_digit(7), "JPEG", quality=30)))
    assert difference(model_input(noisy), reference) < 0.03
    blank = Image.open(
        io.BytesIO(encode(Image.new("RGB", (280, 280), "white"), "JPEG", quality=30))
    )
    assert to_model_input(blank) is None


@pytest.mark.parametrize(
    "picture",
    [
        Image.new("RGB", (280, 280), "white"),
        Image.new("L", (280, 280), 0),
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
        Image.new("RGBA", (280, 280), (255, 0, 0, 0)),
        Image.new("RGB", (1, 1), "white"),
        Image.new("L", (50, 50), 128),
    ],
    ids=["white", "black", "transparent", "transparent-red", "one-pixel", "grey"],
)
def test_blank_pictures_are_empty(picture: Image.Image) -> None:
    """Paper with no ink (any colour, any alpha) gives None, not a guess."""
    assert to_model_input(picture) is None


def test_faint_speck_is_not_a_digit() -> None:
    """A single grey speck below the contrast threshold counts as blank."""
    picture = Image.new("L", (280, 280), 255)
    picture.putpixel((140, 140), 235)
    assert to_model_input(picture) is None


def test_thin_line_on_a_large_canvas_does_not_vanish(reference: NDArray[np.float32]) -> None:
    """A 2 px pen on a 1000 px canvas is thickened to an MNIST-like stroke."""
    picture = draw_digit(7, canvas=(1000, 1000), box=(150, 150, 700), line_width=2)
    thin = model_input(picture)
    assert thin.sum() > 0.5 * reference.sum()
    assert difference(thin, reference) < 0.06


def test_stray_faint_noise_does_not_move_the_crop(reference: NDArray[np.float32]) -> None:
    """Faint marks far from the digit (paper texture) are ignored for the bounding box."""
    picture = draw_digit(7, mode="L", ink=(0,), paper=(255,))
    picture.putpixel((2, 2), 215)
    picture.putpixel((277, 270), 215)
    assert difference(model_input(picture), reference) < 0.01


def test_huge_picture_is_reduced_before_float_work() -> None:
    """An 8000x8000 picture is processed without allocating its full float copy."""
    picture = draw_digit(
        1,
        canvas=(8000, 8000),
        box=(2000, 2000, 4000),
        line_width=400,
        mode="L",
        ink=(0,),
        paper=(255,),
    )
    tracemalloc.start()
    try:
        result = to_model_input(picture)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result is not None
    # A float32 copy of the whole picture would be 256 MB.
    assert peak < 40 * 1024 * 1024


def test_preprocessing_is_idempotent(reference: NDArray[np.float32]) -> None:
    """An input that is already MNIST-shaped (boxed, centred) comes out nearly as it went in."""
    again = ink_to_model_input(reference)
    assert again is not None
    assert difference(again, reference) < 0.02


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "1", "P", "I", "F"]),
    width=st.integers(1, 64),
    height=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
)
def test_arbitrary_pictures_give_none_or_a_valid_input(
    mode: str, width: int, height: int, seed: int
) -> None:
    """Random pixels in any mode and shape never raise: None or a valid 28x28 input."""
    generator = np.random.default_rng(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    noise = generator.integers(0, 256, size=(height, width, bands), dtype=np.uint8)
    base = Image.fromarray(noise.squeeze(-1) if bands == 1 else noise)
    picture = base.convert(mode) if base.mode != mode else base
    result = to_model_input(picture)
    if result is not None:
        assert result.shape == (28, 28)
        assert np.isfinite(result).all() and result.min() >= 0.0 and result.max() <= 1.0


def anti_aliased(digit: int, **options: object) -> Image.Image:
    """A digit drawn at 3x and box-reduced to 280x280: grey edges like a browser canvas."""
    big = draw_digit(digit, canvas=(840, 840), box=(120, 120, 600), line_width=60, **options)
    return big.reduce(3)


def defined_ink(picture: Image.Image) -> NDArray[np.float32]:
    """The ink map as documented, all in floats: alpha on white, distance from the border."""
    rgba = np.asarray(picture.convert("RGBA"), dtype=np.float64) / 255.0
    colours = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    border = np.concatenate([colours[0], colours[-1], colours[1:-1, 0], colours[1:-1, -1]])
    paper = np.median(border, axis=0)
    distance = np.sqrt(np.square(colours - paper).sum(axis=-1)) / np.sqrt(3.0)
    return distance.astype(np.float32)


@pytest.mark.parametrize(
    ("mode", "ink", "paper", "tolerance"),
    [
        ("L", (0,), (255,), 1e-5),
        ("RGB", (0, 0, 0), (255, 255, 255), 1e-5),
        ("RGB", (230, 230, 230), (40, 40, 40), 1e-5),
        ("RGB", (200, 60, 60), (60, 140, 60), 1e-5),
        ("RGBA", (0, 0, 0, 255), (0, 0, 0, 0), 1e-5),
        ("LA", (0, 255), (0, 0), 1e-5),
        # Coloured ink over transparency is composited in 8 bits, within a grey level.
        ("RGBA", (20, 20, 200, 255), (255, 255, 255, 0), 1e-3),
        ("RGBA", (90, 90, 90, 200), (255, 0, 0, 0), 1e-3),
    ],
)
def test_fast_paths_give_the_float_definition(
    mode: str, ink: tuple[int, ...], paper: tuple[int, ...], tolerance: float
) -> None:
    """The grey, alpha and integer-crop shortcuts give the input of the all-float definition."""
    picture = anti_aliased(7, mode=mode, ink=ink, paper=paper)
    expected = ink_to_model_input(defined_ink(picture))
    assert expected is not None
    assert float(np.abs(model_input(picture) - expected).max()) < tolerance


def test_grey_rgb_picture_gives_the_same_input_as_greyscale() -> None:
    """A colourless RGB picture and the same picture in mode L give the very same input."""
    picture = anti_aliased(4, mode="L", ink=(30,), paper=(225,))
    assert np.array_equal(model_input(picture.convert("RGB")), model_input(picture))


@pytest.mark.parametrize(
    "ink", [(0, 0, 0, 255), (20, 20, 200, 255), (90, 90, 90, 160)], ids=["black", "blue", "grey"]
)
def test_transparent_picture_gives_the_input_of_its_composite_on_white(
    ink: tuple[int, ...],
) -> None:
    """RGBA ink on a transparent canvas gives the input of that canvas composited onto white."""
    picture = anti_aliased(7, mode="RGBA", ink=ink, paper=(0, 0, 0, 0))
    white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
    composite = Image.alpha_composite(white, picture).convert("RGB")
    assert float(np.abs(model_input(picture) - model_input(composite)).max()) < 1e-3


def test_colour_ink_on_a_transparent_canvas(reference: NDArray[np.float32]) -> None:
    """A red pen on a canvas left transparent black still gives the reference input."""
    picture = draw_digit(7, ink=(220, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    assert difference(model_input(picture), reference) < 0.03


def test_colour_ink_of_the_papers_grey_level(reference: NDArray[np.float32]) -> None:
    """Ink whose grey equals the paper's is found by its colour: no grey shortcut loses it."""
    picture = draw_digit(7, ink=(190, 100, 110), paper=(128, 128, 128))
    assert to_model_input(picture.convert("L")) is None
    assert difference(model_input(picture), reference) < 0.03


def test_centre_by_mass_places_a_digit_where_scipy_puts_its_centre() -> None:
    """A digit is shifted by exactly round(14 - ndimage.center_of_mass), as before."""
    generator = np.random.default_rng(3)
    for _ in range(20):
        digit = generator.random((20, int(generator.integers(4, 21)))).astype(np.float32)
        digit[digit < 0.6] = 0.0
        row, column = ndimage.center_of_mass(digit)
        top, left = round(14.0 - row), round(14.0 - column)
        expected = np.zeros((28, 28), dtype=np.float32)
        expected[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
        assert np.array_equal(centre_by_mass(digit), expected)


@settings(max_examples=80, deadline=None)
@given(
    mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "CMYK"]),
    width=st.integers(1, 48),
    height=st.integers(1, 48),
    ink_fraction=st.sampled_from([0.02, 0.2, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_integer_crop_gives_the_same_input_as_the_whole_ink_map(
    mode: str, width: int, height: int, ink_fraction: float, seed: int
) -> None:
    """Cropping to the ink in integers first changes nothing: same as the whole float map."""
    generator = np.random.default_rng(seed)
    noise = generator.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    paper = noise[0, 0]
    pixels = np.where(generator.random((height, width, 1)) < ink_fraction, noise, paper)
    picture = Image.fromarray(pixels.astype(np.uint8)).convert(mode)
    cropped = to_model_input(picture)
    whole = ink_to_model_input(ink_map(picture))
    assert (cropped is None) == (whole is None)
    if cropped is not None and whole is not None:
        assert np.array_equal(cropped, whole)
