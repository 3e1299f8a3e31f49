"""Make MNIST digits look like canvas drawings, then preprocess them exactly as serving does.

Each digit is drawn at twice its size, given a random rotation, shear, aspect ratio and
stroke weight (thinner or bolder pen), and passed through `model.preprocess`, so training
sees the distribution that the server's preprocessing produces from real drawings.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from model.preprocess import disk, ink_to_model_input

UPSCALE = 2
CANVAS = 28 * UPSCALE + 16


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random distortions."""

    rotation_degrees: float = 14.0  # Uniform in +/- this.
    shear: float = 0.25  # Horizontal shear factor, uniform in +/- this.
    aspect: float = 0.18  # Width over height scaled by exp(uniform +/- this).
    stroke_change: tuple[int, ...] = (
        -1,
        0,
        0,
        1,
        1,
        2,
    )  # Pen radius change at 2x, drawn uniformly.


def augment_batch(
    images: NDArray[np.uint8], seed: int, settings: Augmentation = Augmentation()
) -> NDArray[np.uint8]:
    """Distort and preprocess a batch of 28x28 uint8 digits; returns uint8 28x28 inputs."""
    generator = np.random.default_rng(seed)
    result = np.empty_like(images)
    for index, image in enumerate(images):
        result[index] = _augment_one(image, generator, settings)
    return result


def augment_all(
    images: NDArray[np.uint8], seed: int, processes: int = 2, chunk: int = 2000
) -> NDArray[np.uint8]:
    """Augment a whole set in parallel processes, reproducibly for a given seed."""
    chunks = [images[start : start + chunk] for start in range(0, len(images), chunk)]
    seeds = [seed * 100_003 + index for index in range(len(chunks))]
    # Spawned workers do not inherit TensorFlow's threads from the parent.
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(augment_batch, chunks, seeds))
    return np.concatenate(parts)


def _augment_one(
    image: NDArray[np.uint8], generator: np.random.Generator, settings: Augmentation
) -> NDArray[np.uint8]:
    """One random distortion of one digit, through the serving preprocessing."""
    ink = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    big = ndimage.zoom(image.astype(np.float32) / 255.0, UPSCALE, order=1)
    offset = (CANVAS - big.shape[0]) // 2
    ink[offset : offset + big.shape[0], offset : offset + big.shape[1]] = big

    angle = math.radians(generator.uniform(-1, 1) * settings.rotation_degrees)
    shear = generator.uniform(-1, 1) * settings.shear
    stretch = math.exp(generator.uniform(-1, 1) * settings.aspect)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shearing = np.array([[1.0, 0.0], [shear, 1.0]])
    scaling = np.diag([1.0 / math.sqrt(stretch), math.sqrt(stretch)])
    # affine_transform maps output coordinates to input ones: pass the inverse.
    forward = rotation @ shearing @ scaling
    inverse = np.linalg.inv(forward)
    centre = np.array([CANVAS / 2.0, CANVAS / 2.0])
    ink = ndimage.affine_transform(ink, inverse, offset=centre - inverse @ centre, order=1)

    change = int(generator.choice(settings.stroke_change))
    if change > 0:
        ink = ndimage.grey_dilation(ink, footprint=disk(change))
    elif change < 0:
        eroded = ndimage.grey_erosion(ink, footprint=disk(-change))
        # Never erode a digit away: keep the original where erosion would leave too little.
        if eroded.max() > 0.5 and eroded.sum() > 0.4 * ink.sum():
            ink = eroded

    model_input = ink_to_model_input(ink.astype(np.float32))
    if model_input is None:
        return image
    return np.round(model_input * 255.0).astype(np.uint8)
