"""Training batches that mix plain MNIST digits with one augmented copy per epoch."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from numpy.typing import NDArray


class MixedBatches(keras.utils.PyDataset):  # type: ignore[misc]
    """Each epoch: a fresh shuffle; each image plain or augmented (round = epoch mod rounds)."""

    def __init__(
        self,
        images: NDArray[np.uint8],
        augmented: list[NDArray[np.uint8]],
        labels: NDArray[np.uint8],
        batch_size: int,
        augmented_fraction: float,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.images, self.augmented, self.labels = images, augmented, labels
        self.batch_size, self.augmented_fraction = batch_size, augmented_fraction
        self.generator = np.random.default_rng(seed)
        self.epoch = 0
        self._shuffle()

    def _shuffle(self) -> None:
        """Draw this epoch's order and which images come from the augmented copy."""
        self.order = self.generator.permutation(len(self.labels))
        self.use_augmented = self.generator.random(len(self.labels)) < self.augmented_fraction

    @property
    def num_batches(self) -> int:
        """Batches per epoch (the last may be short)."""
        return -(-len(self.labels) // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        copy = self.augmented[self.epoch % len(self.augmented)]
        images = np.where(
            self.use_augmented[chosen][:, None, None], copy[chosen], self.images[chosen]
        )
        return (images.astype(np.float32) / 255.0)[..., None], self.labels[chosen]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._shuffle()
