"""Datasets of integer grids: :func:`load_dataset` (built-in ``mnist5k`` and ``digits``, image folders, ``hf:``,
``torchvision:`` and ``codes:`` sources), and the colour palette transform (:class:`ColorPalette`)."""

from .codes import codes_metadata, encode_dataset, encode_to_file, load_codes, save_codes
from .datasets import DATASETS, DatasetSpec, GridDataset, list_datasets, load_dataset, parse_dataset
from .mnist import load_mnist5k
from .palette import ColorPalette

__all__ = [
    "DATASETS",
    "ColorPalette",
    "DatasetSpec",
    "GridDataset",
    "codes_metadata",
    "encode_dataset",
    "encode_to_file",
    "list_datasets",
    "load_codes",
    "load_dataset",
    "load_mnist5k",
    "parse_dataset",
    "save_codes",
]
