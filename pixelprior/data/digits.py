"""``digits``: scikit-learn's 1,797 handwritten digits (8x8, ten classes), shipped with the package, no network.

scikit-learn stores gray values ``v`` in ``0..16``. They are mapped to 8-bit bins ``round(255 v / 16)`` by the one
float -> bins conversion (:func:`pixelprior.distributions.images_to_bins` of ``v / 16``), so that ``digits`` is an
8-bit source like every other: ``binarize`` (``v >= 8``) and ``num_bits`` mean the same here as elsewhere. Only 17 of
the 256 levels occur; a model of the raw 17 levels would need ``num_values = 17``, which no other source has.

The split is :func:`pixelprior.data.split.fixed_split`: 10 % of each digit (seed 0) is the test set, 1,618 / 179.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..distributions import images_to_bins
from .split import fixed_split

NUM_IMAGES, IMAGE_SIZE, MAX_VALUE = 1797, 8, 16


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: ``(1797, 8, 8)`` floats in ``[0, 16]`` and ``(1797,)`` labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    if digits.images.shape != (NUM_IMAGES, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"Expected scikit-learn's digits of shape (1797, 8, 8), got {digits.images.shape}.")
    return digits.images, digits.target


def load_digits8(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` part of ``digits`` as 8-bit bins and labels.

    Returns:
        ``x`` ``(N, 1, 8, 8)`` uint8 in ``{round(255 v / 16)}`` and ``labels`` ``(N,)`` int64 in ``[0, 10)``.

    Example:
        >>> x, labels = load_digits8("test")
        >>> x.shape, sorted(set(labels.tolist())) == list(range(10))
        ((179, 1, 8, 8), True)
    """
    images, labels = _raw()
    index = fixed_split(NUM_IMAGES, split, labels)
    floats = torch.from_numpy(images[index] / MAX_VALUE).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    return images_to_bins(floats, 256).to(torch.uint8).numpy(), labels[index].astype(np.int64)
