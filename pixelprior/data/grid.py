"""The in-memory dataset every source loads into: :class:`GridDataset`, integer grids with optional labels.

Its own module so that the sources (:mod:`.datasets`, :mod:`.codes`) import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

SPLITS = ("train", "test")


def _storage_dtype(num_values: int) -> torch.dtype:
    """The smallest integer dtype that holds ``[0, num_values)``."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if num_values - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


class GridDataset(Dataset):
    """An in-memory dataset of integer grids with optional labels.

    The grids are stored compactly (``x`` is uint8 when ``num_values <= 256``, else the smallest integer dtype that
    holds the values: CIFAR-10's 50,000 images take 150 MB, not 1.2 GB); each item is converted to long.

    Args:
        x: ``(N, C, H, W)`` integer bins in ``[0, num_values)``.
        num_values: values per channel.
        labels: ``(N,)`` integer class labels, or ``None``.
        num_classes: the number of classes the labels come from (labels must lie in ``[0, num_classes)``), or
            ``None``.
        class_names: the name of each class, where the source has them (image folders, ``ClassLabel`` features).

    Shapes:
        x: ``(N, C, H, W)`` stored dtype; item: ``{"x": (C, H, W) long}``, plus ``"class_labels": ()`` long when the
        dataset has labels.
    """

    def __init__(
        self,
        x: torch.Tensor,
        num_values: int,
        labels: torch.Tensor | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or torch.is_floating_point(x) or x.dtype == torch.bool:
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"Expected x to be an integer tensor of shape (N, C, H, W), got {got}.")
        if not isinstance(num_values, int) or num_values < 2:
            raise ValueError(f"Expected num_values to be an int >= 2, got {num_values!r}.")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_values):  # int(): no uint8 wrap-around
            raise ValueError(f"Expected values in [0, {num_values}), got values in [{int(x.min())}, {int(x.max())}].")
        if labels is not None and (
            not isinstance(labels, torch.Tensor) or torch.is_floating_point(labels) or labels.dtype == torch.bool
        ):
            # a float label would be truncated to a class silently (2.7 -> 2)
            got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"Expected labels to be an integer tensor, got {got}.")
        if labels is not None and tuple(labels.shape) != (len(x),):
            raise ValueError(f"Expected labels of shape ({len(x)},), got {tuple(labels.shape)}.")
        if labels is not None and len(labels):
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or (num_classes is not None and high >= num_classes):
                bound = "labels >= 0" if num_classes is None else f"labels in [0, {num_classes})"
                raise ValueError(f"Expected {bound}, got labels in [{low}, {high}].")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Expected {num_classes} class names, got {len(class_names)}.")
        self.x = x.to(_storage_dtype(num_values))
        self.labels = None if labels is None else labels.long()
        self.num_values, self.num_classes = num_values, num_classes
        self.class_names = None if class_names is None else list(class_names)

    @property
    def in_channels(self) -> int:
        return self.x.shape[1]

    @property
    def sample_size(self) -> tuple[int, int]:
        return (self.x.shape[2], self.x.shape[3])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"x": self.x[index].long()}
        if self.labels is not None:
            item["class_labels"] = self.labels[index]
        return item
