"""Real digit drawings as a browser streams them: growing PNG snapshots of MNIST test digits.

Each drawing is one MNIST test digit upscaled onto a 280x280 canvas and revealed in the
order a pen would lay the ink down (top to bottom, left to right within a band), so every
snapshot shows a little more of the digit, the last one the whole of it.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from train.data import load_mnist

CANVAS_SIZE = 280
SNAPSHOTS_PER_DRAWING = 12


def drawing_snapshots(digit: NDArray[np.uint8], steps: int = SNAPSHOTS_PER_DRAWING) -> list[bytes]:
    """PNG snapshots (dark ink on white) of one digit being drawn, in `steps` stages."""
    big = np.asarray(
        Image.fromarray(digit, mode="L").resize((CANVAS_SIZE - 60,) * 2, Image.Resampling.BICUBIC),
        dtype=np.uint8,
    )
    canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    canvas[30:-30, 30:-30] = big
    rows = np.flatnonzero(canvas.max(axis=1) > 0)
    first, last = int(rows[0]), int(rows[-1]) + 1
    snapshots = []
    for stage in range(1, steps + 1):
        visible = canvas.copy()
        visible[first + (last - first) * stage // steps :] = 0
        paper = Image.fromarray(255 - visible, mode="L")
        buffer = io.BytesIO()
        paper.save(buffer, format="PNG", compress_level=1)
        snapshots.append(buffer.getvalue())
    return snapshots


def load_drawings(count: int, seed: int = 5) -> tuple[list[list[bytes]], list[int]]:
    """`count` drawings of random MNIST test digits, with their labels."""
    mnist = load_mnist()
    chosen = np.random.default_rng(seed).choice(len(mnist.test_labels), size=count, replace=False)
    drawings = [drawing_snapshots(mnist.test_images[index]) for index in chosen]
    return drawings, [int(mnist.test_labels[index]) for index in chosen]
