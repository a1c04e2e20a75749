"""torchvision: datasets: folders laid out as torchvision writes them, in the real file formats, with tiny content."""

from __future__ import annotations

import collections
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from pixelprior.data import load_dataset
from pixelprior.data.torchvision_files import default_root, read_idx


def write_idx(path: str, array: np.ndarray) -> None:
    """MNIST's IDX format: 0x0000, type 0x08 (unsigned byte), the number of dimensions, big-endian int32 sizes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


def mnist_like(root, folder: str, gz: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(len(folder))
    parts = {"train": (5, "train"), "test": (3, "t10k")}
    out = {}
    for split, (n, stem) in parts.items():
        images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(os.path.join(root, folder, "raw", f"{stem}-images-idx3-ubyte{suffix}"), images)
        write_idx(os.path.join(root, folder, "raw", f"{stem}-labels-idx1-ubyte{suffix}"), labels)
        out[split] = images, labels
    return out


class Py2Pickler(pickle._Pickler):
    """Writes bytes with Python 2's ``str`` opcodes, as the original CIFAR files (written by Python 2) hold them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_cifar_batch(
    path: str, data: np.ndarray, labels: list[int], label_key: bytes = b"labels", py2: bool = True
) -> None:
    """A CIFAR batch: a protocol-2 pickle of a dict with a (N, 3072) uint8 array, as Python 2 (the original files)
    or Python 3 writes it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    entry = {b"batch_label": b"a test batch", label_key: labels, b"data": data, b"filenames": [b"x.png"] * len(data)}
    with open(path, "wb") as f:
        (Py2Pickler(f, protocol=2) if py2 else pickle.Pickler(f, protocol=2)).dump(entry)


def test_mnist_and_fashionmnist_idx_files(tmp_path, monkeypatch):
    parts = mnist_like(tmp_path, "MNIST")
    for split, (images, labels) in parts.items():
        data = load_dataset("torchvision:mnist", split, data_dir=tmp_path)
        assert (data.num_values, data.in_channels, data.sample_size, data.num_classes) == (256, 1, (28, 28), 10)
        assert torch.equal(data.x[:, 0], torch.from_numpy(images)) and data.labels.tolist() == labels.tolist()
    # gzipped files, and the root from $PIXELPRIOR_DATA
    fashion = mnist_like(tmp_path / "env", "FashionMNIST", gz=True)
    monkeypatch.setenv("PIXELPRIOR_DATA", str(tmp_path / "env"))
    assert default_root() == str(tmp_path / "env")
    data = load_dataset("torchvision:FashionMNIST", "test", binarize=True)
    assert torch.equal(data.x[:, 0].long(), torch.from_numpy(fashion["test"][0] >= 128).long())
    assert data.num_values == 2


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data, labels = rng.integers(0, 256, (2, 3072), dtype=np.uint8), rng.integers(0, 10, 2).tolist()
        write_cifar_batch(str(folder / name), data, labels)
        batches[name] = data, labels
    train = load_dataset("torchvision:cifar10", "train", data_dir=str(tmp_path))
    assert (len(train), train.in_channels, train.sample_size, train.num_classes) == (10, 3, (32, 32), 10)
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    # each row holds the R, G, B planes of 32x32 pixels, row-major
    assert torch.equal(train.x, torch.from_numpy(expected).view(10, 3, 32, 32))
    assert torch.equal(train.x[3, 1, 0, 5], torch.tensor(expected[3, 1024 + 5]))
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    test = load_dataset("torchvision:cifar10", "test", data_dir=tmp_path, num_bits=5, resolution=16)
    assert (len(test), test.num_values, test.sample_size) == (2, 32, (16, 16))


def test_cifar100_fine_labels(tmp_path):
    data = np.zeros((2, 3072), np.uint8)
    data[:, :1024], data[:, 1024:2048], data[:, 2048:] = 10, 20, 30  # R, G, B planes
    for name in ("train", "test"):
        write_cifar_batch(str(tmp_path / "cifar-100-python" / name), data, [99, 0], b"fine_labels", py2=False)
    test = load_dataset("torchvision:cifar100", "test", data_dir=tmp_path)
    assert test.num_classes == 100 and test.labels.tolist() == [99, 0]
    assert test.x[:, 0].unique().tolist() == [10] and test.x[:, 2].unique().tolist() == [30]


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match=r"CIFAR10 files under .*cifar-10-batches-py/data_batch_1.*download=True"):
        load_dataset("torchvision:cifar10", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"KMNIST files under .*KMNIST/raw/t10k-images-idx3-ubyte"):
        load_dataset("torchvision:kmnist", "test", data_dir=tmp_path)

    write_idx(str(tmp_path / "bad.idx"), np.zeros((2, 3), np.uint8))
    with open(tmp_path / "bad.idx", "r+b") as f:
        f.write(bytes([0, 0, 0x0D]))  # float32 type code: not MNIST's unsigned bytes
    with pytest.raises(ValueError, match="IDX file of unsigned bytes"):
        read_idx(str(tmp_path / "bad.idx"))

    # A pickle that references anything but plain data and numpy arrays is refused before any object is built.
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    os.makedirs(path.parent)
    with open(path, "wb") as f:
        pickle.dump(collections.OrderedDict(data=np.zeros((1, 3072), np.uint8), labels=[0]), f, protocol=2)
    with pytest.raises(ValueError, match="got a reference to collections.OrderedDict"):
        load_dataset("torchvision:cifar10", "test", data_dir=tmp_path)
    write_cifar_batch(str(path), np.zeros((1, 100), np.uint8), [0])
    with pytest.raises(ValueError, match=r"shape \(N, 3072\)"):
        load_dataset("torchvision:cifar10", "test", data_dir=tmp_path)
