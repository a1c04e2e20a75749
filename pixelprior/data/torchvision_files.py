"""``torchvision:NAME``: the files that ``torchvision.datasets.NAME(root, download=True)`` writes, read directly.

torchvision itself is not needed, nor imported: the standard formats are simple, and torchvision's wheel on PyPI for
torch 2.13 is a CUDA build that does not import next to the CPU torch. The folder layouts are torchvision's:

* ``mnist``: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (or ``.gz``), 28x28 gray, 10 classes;
* ``fashionmnist``, ``kmnist``: the same files under ``FashionMNIST/raw`` and ``KMNIST/raw``;
* ``cifar10``: ``cifar-10-batches-py/data_batch_{1..5}`` and ``test_batch``, 32x32 RGB, 10 classes;
* ``cifar100``: ``cifar-100-python/train`` and ``test`` (the 100 ``fine_labels``), 32x32 RGB.

MNIST-like files are IDX arrays (big-endian header, uint8 payload). CIFAR batches are Python pickles of a dict
holding a uint8 ``data`` array; they are read with an unpickler that builds only dicts, lists, strings, numbers and
numpy arrays and refuses every other object, so a tampered file cannot run code.

The root folder is ``data_dir``, else ``$PIXELPRIOR_DATA``, else ``~/.cache/pixelprior``. Nothing is downloaded: a
missing file raises ``ValueError`` saying where it looked and how to get it.
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle

import numpy as np

DATA_ENV = "PIXELPRIOR_DATA"
# name -> (torchvision's class, subfolder, number of classes)
IDX_DATASETS = {
    "mnist": ("MNIST", "MNIST/raw", 10),
    "fashionmnist": ("FashionMNIST", "FashionMNIST/raw", 10),
    "kmnist": ("KMNIST", "KMNIST/raw", 10),
}
# name -> (torchvision's class, subfolder, {split: batch files}, label key, number of classes)
CIFAR_DATASETS = {
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
        10,
    ),
    "cifar100": ("CIFAR100", "cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels", 100),
}
TORCHVISION_DATASETS = sorted({**IDX_DATASETS, **CIFAR_DATASETS})
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def normalize_name(name: str) -> str:
    """``"CIFAR-10"``, ``"cifar10"``, ``"Fashion_MNIST"`` -> the key of a known dataset; ``ValueError`` if unknown."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in TORCHVISION_DATASETS:
        raise ValueError(f"Expected torchvision:NAME with NAME one of {TORCHVISION_DATASETS}, got {name!r}.")
    return key


def default_root(data_dir: str | os.PathLike | None = None) -> str:
    """``data_dir``, else ``$PIXELPRIOR_DATA``, else ``~/.cache/pixelprior``."""
    root = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or os.path.join("~", ".cache", "pixelprior")
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def _missing(name: str, root: str, looked_for: str) -> ValueError:
    cls = {**IDX_DATASETS, **CIFAR_DATASETS}[name][0]
    return ValueError(
        f"Expected torchvision's {cls} files under {root!r}, but {looked_for!r} is not there. Get them once with "
        f'`python -c "import torchvision; torchvision.datasets.{cls}({root!r}, train=True, download=True)"` '
        f"(on a machine with torchvision and network; the same folder layout), or point --data_dir / "
        f"${DATA_ENV} at a folder that holds them."
    )


def read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST's format) of unsigned bytes, optionally gzipped, as an array of its stored shape."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(
            f"Expected an IDX file of unsigned bytes (magic 0x0000 08 ..), got {data[:4].hex()} in {path!r}."
        )
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"Expected {int(np.prod(shape))} values of shape {shape} in {path!r}, got {payload.size}.")
    return payload.reshape(shape).copy()  # a writable array, not a view of the file's bytes


class _ArrayUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only: any other global in the pickle is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3's protocol 2 writes bytes (the arrays' payload)
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise ValueError(
                f"Expected a CIFAR batch of plain data and numpy arrays, got a reference to {module}.{name}."
            )
        if module.startswith("numpy.core."):  # NumPy 2 renamed numpy.core to numpy._core
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return getattr(importlib.import_module(module), name)


def read_cifar_batch(path: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file: ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels."""
    with open(path, "rb") as f:
        entry = _ArrayUnpickler(f, encoding="latin1").load()
    if not isinstance(entry, dict):
        raise ValueError(f"Expected a CIFAR batch (a dict), got {type(entry).__name__} in {path!r}.")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise ValueError(f"Expected the keys 'data' and {label_key!r} in {path!r}, got {sorted(entry)}.")
    data, labels = np.asarray(entry["data"]), np.asarray(entry[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(
            f"Expected uint8 data of shape (N, 3072) and N labels in {path!r}, got {data.dtype} {data.shape} and "
            f"{len(labels)} labels."
        )
    return data.reshape(-1, 3, 32, 32), labels  # rows are R, G, B planes of 32x32, row-major


def load_torchvision(
    name: str, split: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``split`` of the torchvision dataset ``name`` from its files under the root folder.

    Returns:
        ``x`` ``(N, C, H, W)`` uint8, ``labels`` ``(N,)`` int64 and the number of classes.
    """
    if split not in ("train", "test"):
        raise ValueError(f"Expected split to be 'train' or 'test', got {split!r}.")
    name, root = normalize_name(name), default_root(data_dir)
    if name in IDX_DATASETS:
        _, folder, num_classes = IDX_DATASETS[name]
        arrays = []
        for stem in _IDX_FILES[split]:
            path = os.path.join(root, folder, stem)
            path = path if os.path.exists(path) or not os.path.exists(path + ".gz") else path + ".gz"
            if not os.path.exists(path):
                raise _missing(name, root, os.path.join(folder, stem))
            arrays.append(read_idx(path))
        images, labels = arrays
        if images.ndim != 3 or labels.shape != (len(images),):
            raise ValueError(
                f"Expected (N, H, W) images and (N,) labels in {folder!r}, got {images.shape} and {labels.shape}."
            )
        return images[:, None], labels.astype(np.int64), num_classes  # (N, H, W) -> (N, 1, H, W)
    _, folder, files, label_key, num_classes = CIFAR_DATASETS[name]
    batches = []
    for file in files[split]:
        path = os.path.join(root, folder, file)
        if not os.path.exists(path):
            raise _missing(name, root, os.path.join(folder, file))
        batches.append(read_cifar_batch(path, label_key))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), num_classes
