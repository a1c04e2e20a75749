"""The fixed train / test split of sources that come as one set (``digits``, image folders, one-split HF datasets).

The split is stratified: within each class (or within the whole set when there are no labels) a permutation seeded
with ``seed`` sends the first ``round(n * test_fraction)`` items (at least one when the class has two or more) to
``"test"`` and the rest to ``"train"``. Every class with two or more items is thus in both parts, and every run, on
every machine, sees the same split. (``mnist5k`` keeps its own, older split: :mod:`pixelprior.data.mnist`.)
"""

from __future__ import annotations

import numpy as np

TEST_FRACTION, SPLIT_SEED = 0.1, 0


def fixed_split(
    num_items: int,
    split: str,
    labels: np.ndarray | None = None,
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
) -> np.ndarray:
    """Sorted indices in ``[0, num_items)`` of the items of ``split``.

    Args:
        num_items: the size of the whole set.
        split: ``"train"`` or ``"test"``.
        labels: ``(num_items,)`` integer class labels to stratify by, or ``None``.
        test_fraction: the share of each class that goes to ``"test"``.
        seed: the seed of the permutations.

    Shapes:
        labels: ``(num_items,)`` -> ``(n_split,)`` int64

    Example:
        >>> fixed_split(20, "test").tolist()
        [4, 19]
    """
    if split not in ("train", "test"):
        raise ValueError(f"Expected split to be 'train' or 'test', got {split!r}.")
    if num_items < 2:
        raise ValueError(f"Expected at least 2 items to split into train and test, got {num_items}.")
    if labels is None:
        labels = np.zeros(num_items, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.shape != (num_items,):
        raise ValueError(f"Expected labels of shape ({num_items},), got {labels.shape}.")
    rng = np.random.default_rng(seed)
    test = []
    for value in np.unique(labels):  # sorted: the draws do not depend on the order of the items
        members = np.flatnonzero(labels == value)
        count = max(1, round(len(members) * test_fraction)) if len(members) >= 2 else 0
        test.append(rng.permutation(members)[:count])
    is_test = np.zeros(num_items, dtype=bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test).astype(np.int64)
