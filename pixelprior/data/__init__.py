"""Datasets of integer grids: the built-in ``mnist5k`` digits and the name-based :func:`load_dataset`."""

from .datasets import DATASETS, GridDataset, list_datasets, load_dataset
from .mnist import load_mnist5k

__all__ = ["DATASETS", "GridDataset", "list_datasets", "load_dataset", "load_mnist5k"]
