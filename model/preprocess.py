"""Turn any picture of a digit into the 28x28 input the CNN was trained on.

Owns the whole path from a Pillow image to the model input, done the way MNIST itself was
made: find the ink (whatever differs from the paper, in either polarity, after compositing
alpha onto white), crop to it, scale its longer side to 20 px with anti-aliasing and place it
in a 28x28 field so that its centre of mass sits in the middle. Strokes too thin to survive
that scaling are thickened first, so a 2 px pen line on a 1000 px canvas does not vanish.

Everything here is pure NumPy/Pillow/SciPy with no I/O; training runs its augmented digits
through `ink_to_model_input`, the same function serving uses.

Serving (`to_model_input`) gives the same input as `ink_to_model_input(ink_map(image))` but
does as little float work as it can, because a browser canvas is mostly paper:
- a picture with no colour (black on white, any grey) is read as one 8-bit grey band, once
  Pillow's C code has found its three bands equal; only a picture with colour keeps three;
- a `toDataURL` PNG (black ink on transparent black) is 255 - alpha on white; other alpha is
  composited by Pillow in 8 bits (within a grey level of the exact blend);
- the box around the ink above the noise floor is found in integers on those 8-bit pixels,
  and only that box becomes floats;
- the pen-width outline and the centre of mass are plain NumPy sums, not SciPy calls whose
  overhead dominates on small arrays.
16-bit and float pictures take the float path throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageChops
from scipy import ndimage

FIELD_SIZE = 28
BOX_SIZE = 20
# Pictures are reduced to at most this many pixels on a side before any float work, so a
# 4096x4096 upload costs a few megabytes, not a gigabyte.
WORKING_SIZE = 1024
# A picture whose strongest mark differs from the paper by less than this (0..1, where 1 is
# black on white) has no ink: blank paper, JPEG noise, an untouched transparent canvas.
EMPTY_CONTRAST = 0.12
# Ink fainter than this fraction of the strongest ink is noise (JPEG ringing, paper texture)
# and neither counts for the bounding box nor reaches the model.
NOISE_FLOOR = 0.25
# MNIST strokes are about a tenth of the digit's longer side; thinner ones are dilated up
# to this before scaling, at the intermediate resolution below.
MIN_STROKE_FRACTION = 0.07
TARGET_STROKE_FRACTION = 0.10
INTERMEDIATE_SIZE = 80
# Pictures in these modes are read as floats; all others as 8-bit grey or colour.
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# Grey levels of slack when the ink's box is found in integers, far above float rounding.
SLACK = 0.01

FloatArray = NDArray[np.float32]


def to_model_input(image: Image.Image) -> FloatArray | None:
    """Return the 28x28 float32 model input for a picture, or None when it has no ink.

    The same as `ink_to_model_input(ink_map(image))`, but only the box around the ink is
    turned into floats: the box is found in integers, on the 8-bit pixels.
    """
    return to_model_input_and_box(image)[0]


@dataclass(frozen=True)
class InkCut:
    """A picture's ink map cut to a box around all its ink (`ink_map`'s, from `origin` on),
    and the picture's pixels per ink-map pixel (above 1 when the picture was reduced)."""

    ink: FloatArray
    origin: tuple[int, int]  # The cut's top left corner in the ink map: (left, top).
    scale: tuple[float, float]  # (x, y)


def to_model_input_and_box(
    image: Image.Image,
) -> tuple[FloatArray | None, tuple[float, float, float, float] | None, NDArray[np.bool_], InkCut]:
    """`to_model_input`, the box of the ink it kept (x0, y0, x1, y1 in the picture's own
    pixels; None for both when it has no ink), which pixels of the cut ink it kept, and the
    cut ink itself: enough to split the picture into pieces without reading it again."""
    pixels = _pixels(image)
    ink, (top, left) = _ink_around_the_digit(pixels)
    # A large picture was reduced before its ink was read: boxes are in its own pixels.
    scale_x, scale_y = image.width / pixels.shape[1], image.height / pixels.shape[0]
    cut = InkCut(ink, (left, top), (scale_x, scale_y))
    model_input = ink_to_model_input(ink)
    if model_input is None:
        return None, None, np.zeros((0, 0), dtype=bool), cut
    kept = ink >= NOISE_FLOOR * float(ink.max())
    rows = np.flatnonzero(kept.any(axis=1))
    columns = np.flatnonzero(kept.any(axis=0))
    box = (
        (left + columns[0]) * scale_x,
        (top + rows[0]) * scale_y,
        (left + columns[-1] + 1) * scale_x,
        (top + rows[-1] + 1) * scale_y,
    )
    return model_input, tuple(float(value) for value in box), kept, cut  # type: ignore[return-value]


def ink_map(image: Image.Image) -> FloatArray:
    """Return the ink of a picture as a float32 array in [0, 1]: 0 is paper, 1 is full ink.

    The paper colour is the median colour of the picture's border, so dark ink on light
    paper, light ink on dark paper and coloured ink on coloured paper all come out the same.
    A picture over WORKING_SIZE on a side is reduced first: the map is smaller than it.
    """
    pixels = _pixels(image)
    return _ink(pixels, _paper(pixels))


def ink_to_model_input(ink: FloatArray) -> FloatArray | None:
    """Crop, thicken, scale and centre an ink map into the 28x28 model input (None if empty)."""
    strongest = float(ink.max()) if ink.size else 0.0
    if strongest < EMPTY_CONTRAST:
        return None
    ink = ink / strongest
    kept = ink >= NOISE_FLOOR
    # Multiplying by the mask is the cheapest way to zero what the noise floor drops.
    ink = np.asarray(ink * kept, dtype=np.float32)
    rows = np.flatnonzero(kept.any(axis=1))
    columns = np.flatnonzero(kept.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]

    ink = _thicken_thin_strokes(ink)
    digit = scale_into_box(ink)
    return centre_by_mass(digit)


def _ink_around_the_digit(pixels: NDArray[Any]) -> tuple[FloatArray, tuple[int, int]]:
    """The ink map cut to a box that holds all ink above the noise floor (empty: no ink),
    and where that box's top left corner lies in `pixels`.

    `ink_to_model_input` gives the same input for this box as for the whole map: the box
    holds the strongest ink and everything it keeps after the noise floor.
    """
    paper = _paper(pixels)
    if pixels.dtype != np.uint8:
        return _ink(pixels, paper), (0, 0)
    box = _ink_box(pixels, paper)
    if box is None:
        return np.zeros((0, 0), dtype=np.float32), (0, 0)
    top, bottom, left, right = box
    return _ink(pixels[top:bottom, left:right], paper), (top, left)


def _pixels(image: Image.Image) -> NDArray[Any]:
    """The picture reduced and composited onto white, in the cheapest form for the ink map.

    uint8 (H, W) when it has no colour, uint8 (H, W, 3) when it has, float32 (H, W, 1) in
    [0, 1] for 16-bit and float modes. The work here is Pillow's C code and a few whole-array
    NumPy operations on 8-bit values: no floats yet.
    """
    if image.mode in DEEP_MODES:
        image = _reduce(image)
        if image.mode in DEEP_MODES:
            return _deep_colours(image)
    if _has_alpha(image):
        greyscale = image.mode in ("LA", "La") or (
            image.mode == "P" and image.palette is not None and image.palette.mode == "L"
        )
        target = "LA" if greyscale else "RGBA"
        if image.mode != target:
            image = image.convert(target)
        if _colour_is_black(image):
            # Black ink on transparent black, as canvas.toDataURL gives: on white, every
            # pixel is 255 - alpha, and the alpha band alone is reduced.
            return np.asarray(255 - np.asarray(_reduce(image.getchannel("A"))), dtype=np.uint8)
        # Any other ink: composited by Pillow in 8 bits, within a grey level of the exact
        # float blend.
        image = _reduce(image)
        paper = Image.new(target[:-1], image.size, "white")
        paper.paste(image, mask=image.getchannel("A"))
        image = paper
    else:
        image = _reduce(image)
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    colour = image.convert("RGB") if image.mode != "RGB" else image
    red, green, blue = colour.split()
    # Three equal bands are a picture with no colour, and any of them is its grey.
    if (
        ImageChops.difference(red, green).getbbox() is None
        and ImageChops.difference(green, blue).getbbox() is None
    ):
        return np.asarray(green)
    return np.asarray(colour)


def _colour_is_black(image: Image.Image) -> bool:
    """Whether every pixel of an LA or RGBA picture has colour 0, whatever its alpha."""
    pixels = np.asarray(image)
    # One little-endian word a pixel, alpha in its top byte: faster than Pillow's per-band
    # getextrema, which copies every band first.
    words = pixels.view("<u4" if image.mode == "RGBA" else "<u2")
    colour = 0xFFFFFF if image.mode == "RGBA" else 0xFF
    return not bool((words & colour).any())


def _paper(pixels: NDArray[Any]) -> NDArray[np.float32]:
    """The paper colour in [0, 1]: the median colour of the border, one value per band."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]], axis=0)
    colours = _as_colours(border)
    return np.asarray(np.median(colours, axis=0), dtype=np.float32)


def _as_colours(pixels: NDArray[Any]) -> FloatArray:
    """8-bit pixels as float colours in [0, 1]; float ones as they are."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255.0)
    return np.asarray(pixels, dtype=np.float32)


def _ink(pixels: NDArray[Any], paper: NDArray[np.float32]) -> FloatArray:
    """Distance of every pixel from the paper colour, 1 for black on white."""
    colours = _as_colours(pixels)
    if colours.ndim == 2:
        # One band: the distance is the absolute difference, already in [0, 1].
        return np.asarray(np.abs(colours - paper[0]), dtype=np.float32)
    distance = np.sqrt(np.sum(np.square(colours - paper), axis=-1))
    # Normalised so that black on white (the largest distance in the RGB cube) is 1.
    scale = math.sqrt(colours.shape[-1])
    return np.asarray(np.clip(distance / scale, 0.0, 1.0), dtype=np.float32)


def _ink_box(
    pixels: NDArray[np.uint8], paper: NDArray[np.float32]
) -> tuple[int, int, int, int] | None:
    """Top, bottom, left, right (exclusive) around the ink kept by the noise floor, or None.

    Works in grey levels (or squared colour distances) on the 8-bit pixels, with a little
    slack so that float rounding in the exact ink map never puts kept ink outside the box.
    None when even the strongest ink is under EMPTY_CONTRAST.
    """
    if pixels.ndim == 2:
        return _grey_ink_box(pixels, float(paper[0]) * 255.0)
    # Twice the paper colour in grey levels is an integer: the median of integers.
    twice_paper = np.rint(paper.astype(np.float64) * 510.0).astype(np.int32)
    squared = np.zeros(pixels.shape[:2], dtype=np.int32)
    for band in range(pixels.shape[-1]):
        difference = pixels[..., band].astype(np.int32) * 2 - twice_paper[band]
        squared += difference * difference
    # Black on white is 510 doubled grey levels in each band.
    strongest = math.sqrt(float(squared.max()))
    if strongest < EMPTY_CONTRAST * 510.0 * math.sqrt(pixels.shape[-1]) - 2.0 * SLACK:
        return None
    limit = max(NOISE_FLOOR * strongest - 2.0 * SLACK, 0.0)
    mask = squared >= math.floor(limit * limit)
    return _bounds(np.asarray(mask.any(axis=1)), np.asarray(mask.any(axis=0)))


def _grey_ink_box(pixels: NDArray[np.uint8], level: float) -> tuple[int, int, int, int] | None:
    """`_ink_box` for one grey band, with the paper at `level` grey levels."""
    # Row and column extremes are cheap 8-bit reductions: no mask of the whole picture.
    row_darkest, row_lightest = pixels.min(axis=1), pixels.max(axis=1)
    strongest = max(level - int(row_darkest.min()), int(row_lightest.max()) - level)
    if strongest < EMPTY_CONTRAST * 255.0 - SLACK:
        return None
    limit = NOISE_FLOOR * strongest - SLACK
    darkest_kept, lightest_kept = math.floor(level - limit), math.ceil(level + limit)
    rows_kept = np.logical_or(row_darkest <= darkest_kept, row_lightest >= lightest_kept)
    columns_kept = np.logical_or(
        pixels.min(axis=0) <= darkest_kept, pixels.max(axis=0) >= lightest_kept
    )
    return _bounds(rows_kept, columns_kept)


def _bounds(
    rows_kept: NDArray[np.bool_], columns_kept: NDArray[np.bool_]
) -> tuple[int, int, int, int]:
    """Top, bottom, left, right (exclusive) of the marked rows and columns."""
    rows = np.flatnonzero(rows_kept)
    columns = np.flatnonzero(columns_kept)
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _reduce(image: Image.Image) -> Image.Image:
    """Shrink a very large picture cheaply (JPEG draft mode, then box reduction)."""
    longest = max(image.size)
    if longest <= WORKING_SIZE:
        return image
    factor = math.ceil(longest / WORKING_SIZE)
    if image.format == "JPEG":
        # Decodes at 1/2, 1/4 or 1/8 scale directly: the full picture is never in memory.
        image.draft("RGB", (image.width // factor, image.height // factor))
        longest = max(image.size)
        factor = math.ceil(longest / WORKING_SIZE)
        if factor <= 1:
            return image
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F", "I;16", "La", "RGBa"):
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
    if image.mode == "I;16":
        image = image.convert("I")
    return image.reduce(factor)


def _has_alpha(image: Image.Image) -> bool:
    """Whether a picture carries transparency (an alpha band or a transparent palette entry)."""
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _deep_colours(image: Image.Image) -> FloatArray:
    """A 16-bit or float picture as grey values in [0, 1] (H, W, 1)."""
    values = np.asarray(image, dtype=np.float32)
    top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
    if image.mode == "F":
        top = max(float(values.max()), 1.0) if values.max() > 1.0 else 1.0
    return np.asarray(np.clip(values / top, 0.0, 1.0)[..., None], dtype=np.float32)


def _stroke_width(ink: FloatArray) -> float:
    """Estimate the pen width in pixels: twice the ink area over its outline length."""
    mask = ink >= 0.5
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 1.0
    # The outline is what a 3x3 cross erosion removes; pixels on the edge always go.
    inside = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    outline = area - int(np.count_nonzero(inside))
    return 2.0 * area / max(outline, 1)


def _thicken_thin_strokes(ink: FloatArray) -> FloatArray:
    """Dilate strokes that are too thin for their size to survive the 20 px scaling."""
    longest = max(ink.shape)
    width = _stroke_width(ink)
    if width / longest >= MIN_STROKE_FRACTION or longest <= BOX_SIZE:
        return ink
    if longest > INTERMEDIATE_SIZE:
        ink = resize(ink, INTERMEDIATE_SIZE / longest)
        ink = ink / max(float(ink.max()), 1e-6)
        width = width * INTERMEDIATE_SIZE / longest
        longest = max(ink.shape)
    grow = TARGET_STROKE_FRACTION * longest - width
    radius = max(1, round(grow / 2))
    footprint = disk(radius)
    padded = np.pad(ink, radius)
    return np.asarray(ndimage.grey_dilation(padded, footprint=footprint), dtype=np.float32)


def disk(radius: int) -> NDArray[np.bool_]:
    """A round structuring element, so dilated strokes keep round ends like a pen's."""
    span = np.arange(-radius, radius + 1)
    return np.asarray(span[:, None] ** 2 + span[None, :] ** 2 <= radius * radius + radius)


def resize(ink: FloatArray, factor: float) -> FloatArray:
    """Anti-aliased resize of a float array by a factor (each side at least 1 px)."""
    height = max(1, round(ink.shape[0] * factor))
    width = max(1, round(ink.shape[1] * factor))
    picture = Image.fromarray(ink.astype(np.float32), mode="F")
    resized = picture.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, None)


def scale_into_box(ink: FloatArray) -> FloatArray:
    """Scale so the longer side is 20 px, keeping the aspect ratio, peak ink 1."""
    return peak_at_one(resize(ink, BOX_SIZE / max(ink.shape)))


def peak_at_one(digit: FloatArray) -> FloatArray:
    """Ink scaled so that its strongest pixel is 1 (and none is below 0 or above 1)."""
    return np.asarray(np.clip(digit / max(float(digit.max()), 1e-6), 0.0, 1.0), dtype=np.float32)


def centre_by_mass(digit: FloatArray) -> FloatArray:
    """Place a digit in the 28x28 field with its centre of mass at the field's centre."""
    # The same sums as ndimage.center_of_mass, without its overhead on a tiny array.
    total = digit.sum()
    height, width = digit.shape
    centre_row = float((digit * np.arange(height, dtype=np.float64)[:, None]).sum() / total)
    centre_column = float((digit * np.arange(width, dtype=np.float64)[None, :]).sum() / total)
    # MNIST puts the centre of mass at pixel index 14 (measured: 13.99, 14.00).
    middle = FIELD_SIZE / 2.0
    top = round(middle - centre_row)
    left = round(middle - centre_column)
    field = np.zeros((FIELD_SIZE, FIELD_SIZE), dtype=np.float32)
    # A lopsided digit (a 7's heavy bar) may push part of its box past the edge: clip it.
    row_from, column_from = max(0, -top), max(0, -left)
    row_to = min(height, FIELD_SIZE - top)
    column_to = min(width, FIELD_SIZE - left)
    field[top + row_from : top + row_to, left + column_from : left + column_to] = digit[
        row_from:row_to, column_from:column_to
    ]
    return field
