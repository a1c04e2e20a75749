"""Datasets of integer grids: :func:`load_dataset` (built-in ``mnist5k`` and ``digits``, image folders, ``hf:``,
``torchvision:`` and ``codes:`` sources), VQ-VAE codes files (:mod:`.codes`, :mod:`.encode`), and the colour palette
transform (:class:`ColorPalette`)."""

from .codes import CodeSplits, codes_metadata, load_code_splits, load_codes, save_codes
from .datasets import DATASETS, DatasetSpec, list_datasets, load_dataset, parse_dataset
from .encode import encode_dataset, encode_to_file
from .grid import GridDataset
from .mnist import load_mnist5k
from .palette import ColorPalette

__all__ = [
    "DATASETS",
    "CodeSplits",
    "ColorPalette",
    "DatasetSpec",
    "GridDataset",
    "codes_metadata",
    "encode_dataset",
    "encode_to_file",
    "list_datasets",
    "load_code_splits",
    "load_codes",
    "load_dataset",
    "load_mnist5k",
    "parse_dataset",
    "save_codes",
]
