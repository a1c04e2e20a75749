"""Datasets of integer grids: the built-in ``mnist5k`` digits, the name-based :func:`load_dataset`, and the colour
palette transform (:class:`ColorPalette`)."""

from .datasets import DATASETS, GridDataset, list_datasets, load_dataset
from .mnist import load_mnist5k
from .palette import ColorPalette

__all__ = ["DATASETS", "ColorPalette", "GridDataset", "list_datasets", "load_dataset", "load_mnist5k"]
