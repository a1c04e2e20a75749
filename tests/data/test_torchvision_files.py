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


# --- bad CIFAR and IDX files: never code, never uninitialized memory, never an allocation beyond the file ------------


class _Reduce:
    """Pickles as ``func(*args)``: how a hostile file calls what it likes."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _pickled(entry) -> bytes:
    return pickle.dumps(entry, protocol=2)


def _batch(data, labels=(0,)) -> dict:
    return {b"batch_label": b"x", b"labels": list(labels), b"data": data}


def _uninitialized_reconstruct() -> bytes:
    """``_reconstruct(ndarray, (N, 3072), b"B")`` with no BUILD: numpy would hand out whatever memory it got."""
    from numpy._core.multiarray import _reconstruct

    return _pickled(_batch(_Reduce(_reconstruct, np.ndarray, (4, 3072), b"B"), [0] * 4))


def _claims_a_huge_array() -> bytes:
    """About 100 bytes claiming a (10^6, 3072) uint8 array: the state's shape, with 3 data bytes."""
    from numpy._core.multiarray import _reconstruct

    class Lying:
        def __reduce__(self):
            return _reconstruct, (np.ndarray, (0,), b"b"), (1, (10**6, 3072), np.dtype("u1"), False, b"abc")

    return _pickled(_batch(Lying(), [0]))


def _memo_bomb() -> bytes:
    """An empty dict memoized at index 2**31 - 1 (LONG_BINPUT), which the C unpickler allocates a memo table for."""
    return b"\x80\x02}r\xff\xff\xff\x7f."


def _marker_payload(marker) -> bytes:
    return _pickled(_batch(_Reduce(os.system, f"touch {marker}")))


def _float_data() -> bytes:
    return _pickled(_batch(np.zeros((1, 3072), np.float64)))


def _valid(labels=(0,)) -> bytes:
    return _pickled(_batch(np.zeros((len(labels), 3072), np.uint8), labels))


# name -> (the file's bytes (given a marker path), what the error says)
BAD_CIFAR = {
    "empty": (lambda marker: b"", r"empty \(0 bytes\)"),
    "truncated": (lambda marker: _valid()[:-2000], "expected 3072 bytes|remain"),
    "text": (lambda marker: b"label,pixels\n0,1 2 3\n", "Expected a CIFAR batch"),
    "ndarray constructor": (lambda marker: _pickled(_batch(_Reduce(np.ndarray, (4, 3072), "u1"))), "builders"),
    "reconstruct without data": (lambda marker: _uninitialized_reconstruct(), "array without data"),
    "huge claimed shape": (lambda marker: _claims_a_huge_array(), "Expected 3072000000 data bytes"),
    "memo bomb": (lambda marker: _memo_bomb(), r"Expected the keys 'data' and 'labels' .*, got \[\]"),
    "os.system payload": (_marker_payload, r"a reference to (posix|nt)\.system"),
    "float64 data": (lambda marker: _float_data(), "integer numpy dtype"),
    "object array": (lambda marker: _pickled(_batch(np.array([[None] * 3072], object))), "integer numpy dtype"),
    "float labels": (lambda marker: _pickled(_batch(np.zeros((1, 3072), np.uint8), [0.5])), "list of ints"),
    "labels out of range": (lambda marker: _valid([10]), r"'labels' in \[0, 10\)"),
    "not a dict": (lambda marker: _pickled([np.zeros((1, 3072), np.uint8)]), r"a dict\), got list"),
    "a class instance (protocol 0)": (
        lambda marker: pickle.dumps(_Reduce(len, "x"), protocol=0),
        r"a reference to (__builtin__|builtins)\.len",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CIFAR))
def test_bad_cifar_files_are_named_value_errors(case, tmp_path):
    import tracemalloc

    make, message = BAD_CIFAR[case]
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    os.makedirs(path.parent)
    marker = tmp_path / "marker"
    path.write_bytes(make(marker))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message) as error:
            load_dataset("torchvision:cifar10", "test", data_dir=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(error.value)
    assert peak < 2**24, f"the reader allocated {peak} bytes for a {path.stat().st_size}-byte file"
    assert not marker.exists()


def test_protocol_5_and_python_3_batches_read_exactly(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (3, 3072), dtype=np.uint8)
    folder = tmp_path / "cifar-10-batches-py"
    os.makedirs(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": np.array([1, 2, 3])}, protocol=5))
    test = load_dataset("torchvision:cifar10", "test", data_dir=tmp_path)
    assert torch.equal(test.x, torch.from_numpy(data).view(3, 3, 32, 32)) and test.labels.tolist() == [1, 2, 3]


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()


# name -> (the images file's bytes, gzipped or not, what the error says)
BAD_IDX = {
    "empty": (b"", False, r"empty \(0 bytes\)"),
    "header only": (b"\x00\x00\x08\x03\x00\x00", False, "truncated"),
    "truncated payload": (_idx(np.zeros((3, 28, 28), np.uint8))[:-5], False, "Expected 2352 values"),
    "longer payload": (_idx(np.zeros((3, 28, 28), np.uint8)) + b"\0", False, "Expected 2352 values"),
    "huge claimed shape": (b"\x00\x00\x08\x03" + struct.pack(">3i", 2**20, 2**10, 2**10), False, "Expected 1099"),
    "gzip claiming more": (gzip.compress(_idx(np.zeros((3, 28, 28), np.uint8))[:-100]), True, "got 2252"),
    "broken gzip": (b"\x1f\x8b\x08\x00" + b"garbage" * 10, True, "readable IDX file"),
    "gzip bomb header": (gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">i", 2**31 - 1)), True, "Expected 2147"),
}


@pytest.mark.parametrize("case", list(BAD_IDX))
def test_bad_idx_files_are_named_value_errors(case, tmp_path):
    data, gz, message = BAD_IDX[case]
    parts = mnist_like(tmp_path, "MNIST", gz=gz)
    path = tmp_path / "MNIST" / "raw" / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as error:
        load_dataset("torchvision:mnist", "test", data_dir=tmp_path)
    assert str(path) in str(error.value)
    assert len(load_dataset("torchvision:mnist", "train", data_dir=tmp_path)) == len(parts["train"][0])


def test_idx_labels_out_of_range(tmp_path):
    mnist_like(tmp_path, "MNIST")
    write_idx(str(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"), np.array([0, 10, 1], np.uint8))
    with pytest.raises(ValueError, match=r"labels in \[0, 10\) in .*t10k-labels-idx1-ubyte"):
        load_dataset("torchvision:mnist", "test", data_dir=tmp_path)
