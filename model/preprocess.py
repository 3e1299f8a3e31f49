"""Turn any picture of a digit into the 28x28 input the CNN was trained on.

Owns the whole path from a Pillow image to the model input, done the way MNIST itself was
made: find the ink (whatever differs from the paper, in either polarity, after compositing
alpha onto white), crop to it, scale its longer side to 20 px with anti-aliasing and place it
in a 28x28 field so that its centre of mass sits in the middle. Strokes too thin to survive
that scaling are thickened first, so a 2 px pen line on a 1000 px canvas does not vanish.

Everything here is pure NumPy/Pillow/SciPy with no I/O; training runs its augmented digits
through `ink_to_model_input`, the same function serving uses.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image
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

FloatArray = NDArray[np.float32]


def to_model_input(image: Image.Image) -> FloatArray | None:
    """Return the 28x28 float32 model input for a picture, or None when it has no ink."""
    return ink_to_model_input(ink_map(image))


def ink_map(image: Image.Image) -> FloatArray:
    """Return the ink of a picture as a float32 array in [0, 1]: 0 is paper, 1 is full ink.

    The paper colour is the median colour of the picture's border, so dark ink on light
    paper, light ink on dark paper and coloured ink on coloured paper all come out the same.
    """
    image = _reduce(image)
    colours = _colours_on_white(image)
    border = np.concatenate([colours[0], colours[-1], colours[1:-1, 0], colours[1:-1, -1]], axis=0)
    paper = np.median(border, axis=0)
    distance = np.sqrt(np.sum(np.square(colours - paper), axis=-1))
    # Normalised so that black on white (the largest distance in the RGB cube) is 1.
    scale = math.sqrt(colours.shape[-1])
    return np.asarray(np.clip(distance / scale, 0.0, 1.0), dtype=np.float32)


def ink_to_model_input(ink: FloatArray) -> FloatArray | None:
    """Crop, thicken, scale and centre an ink map into the 28x28 model input (None if empty)."""
    strongest = float(ink.max()) if ink.size else 0.0
    if strongest < EMPTY_CONTRAST:
        return None
    ink = ink / strongest
    ink = np.where(ink >= NOISE_FLOOR, ink, 0.0).astype(np.float32)
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]

    ink = _thicken_thin_strokes(ink)
    digit = scale_into_box(ink)
    return centre_by_mass(digit)


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


def _colours_on_white(image: Image.Image) -> FloatArray:
    """Return the picture as float colours in [0, 1] (H, W, C), any alpha composited on white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(values.max()), 1.0) if values.max() > 1.0 else 1.0
        return np.asarray(np.clip(values / top, 0.0, 1.0)[..., None], dtype=np.float32)
    if _has_alpha(image):
        grey = image.mode in ("LA", "La") or (
            image.mode == "P" and image.palette is not None and image.palette.mode == "L"
        )
        rgba = np.asarray(image.convert("LA" if grey else "RGBA"), dtype=np.float32) / 255.0
        colour, alpha = rgba[..., :-1], rgba[..., -1:]
        return np.asarray(colour * alpha + (1.0 - alpha), dtype=np.float32)
    if image.mode in ("1", "L"):
        return (np.asarray(image.convert("L"), dtype=np.float32) / 255.0)[..., None]
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _stroke_width(ink: FloatArray) -> float:
    """Estimate the pen width in pixels: twice the ink area over its outline length."""
    mask = ink >= 0.5
    area = int(mask.sum())
    if area == 0:
        return 1.0
    outline = int((mask & ~ndimage.binary_erosion(mask, border_value=0)).sum())
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
    digit = resize(ink, BOX_SIZE / max(ink.shape))
    return np.asarray(np.clip(digit / max(float(digit.max()), 1e-6), 0.0, 1.0), dtype=np.float32)


def centre_by_mass(digit: FloatArray) -> FloatArray:
    """Place a digit in the 28x28 field with its centre of mass at the field's centre."""
    centre_row, centre_column = ndimage.center_of_mass(digit)
    # MNIST puts the centre of mass at pixel index 14 (measured: 13.99, 14.00).
    middle = FIELD_SIZE / 2.0
    top = round(middle - centre_row)
    left = round(middle - centre_column)
    field = np.zeros((FIELD_SIZE, FIELD_SIZE), dtype=np.float32)
    height, width = digit.shape
    # A lopsided digit (a 7's heavy bar) may push part of its box past the edge: clip it.
    row_from, column_from = max(0, -top), max(0, -left)
    row_to = min(height, FIELD_SIZE - top)
    column_to = min(width, FIELD_SIZE - left)
    field[top + row_from : top + row_to, left + column_from : left + column_to] = digit[
        row_from:row_to, column_from:column_to
    ]
    return field
