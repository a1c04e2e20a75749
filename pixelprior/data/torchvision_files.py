"""``torchvision:NAME``: the files that ``torchvision.datasets.NAME(root, download=True)`` writes, read directly.

torchvision itself is not needed, nor imported: the standard formats are simple, and torchvision's wheel on PyPI for
torch 2.13 is a CUDA build that does not import next to the CPU torch. The folder layouts are torchvision's:

* ``mnist``: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (or ``.gz``), 28x28 gray, 10 classes;
* ``fashionmnist``, ``kmnist``: the same files under ``FashionMNIST/raw`` and ``KMNIST/raw``;
* ``cifar10``: ``cifar-10-batches-py/data_batch_{1..5}`` and ``test_batch``, 32x32 RGB, 10 classes;
* ``cifar100``: ``cifar-100-python/train`` and ``test`` (the 100 ``fine_labels``), 32x32 RGB.

MNIST-like files are IDX arrays (big-endian header, uint8 payload): the header's size is checked against the file
before the payload is read (and a gzipped payload is read in chunks, up to the size the header claims).

CIFAR batches are Python pickles of a dict holding a uint8 ``data`` array. They are not unpickled: a small
interpreter (:class:`PlainPickle`) walks the pickle's opcodes (``pickletools.genops``) and builds only dicts, lists,
tuples, strings, bytes and numbers, and numpy arrays made from the data bytes the file holds, of an integer dtype and
exactly the size their shape says. Any other global or opcode is refused, so a tampered file cannot run code, cannot
serve uninitialized memory as images (``numpy.ndarray(shape, dtype)``, or ``_reconstruct`` without its data) and
cannot make the reader allocate more than the file's size (a huge claimed shape, a memo index bomb). Every failure —
empty, truncated, not a pickle, wrong content — is a ``ValueError`` naming the file.

The root folder is ``data_dir``, else ``$PIXELPRIOR_DATA``, else ``~/.cache/pixelprior``. Nothing is downloaded: a
missing file raises ``ValueError`` saying where it looked and how to get it.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickletools
import zlib
from typing import Any

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


# No MNIST-like file comes near these (MNIST's training images: 47 MB; CIFAR-100's training batch: 155 MB): a header
# or file claiming more is refused before anything is allocated.
MAX_IDX_BYTES = MAX_BATCH_BYTES = 1 << 30
_CHUNK = 1 << 24


def _check_size(path: str, limit: int) -> None:
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"Expected a dataset file, got {path!r}, which is empty (0 bytes).")
    if size > limit:
        raise ValueError(f"Expected a dataset file of at most {limit} bytes, got {path!r} of {size} bytes.")


def _read_at_most(f: Any, count: int) -> bytes:
    """Up to ``count`` bytes of ``f``, read in chunks: ``f.read(count)`` would allocate ``count`` bytes at once,
    whatever the file holds."""
    chunks, left = [], count
    while left > 0:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST's format) of unsigned bytes, optionally gzipped, as an array of its stored shape.

    Raises:
        ValueError: naming the file, if it is empty, not IDX, truncated, longer than its header says, a broken gzip
            stream, or claims more than :data:`MAX_IDX_BYTES`.
    """
    _check_size(path, MAX_IDX_BYTES)
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:3] != bytes([0, 0, 0x08]):
                raise ValueError(
                    f"Expected an IDX file of unsigned bytes (magic 0x0000 08 ..), got {magic.hex()} in {path!r}."
                )
            dims = f.read(4 * magic[3])
            if len(dims) != 4 * magic[3]:
                raise ValueError(f"Expected {magic[3]} dimensions in the header of {path!r}, got a truncated file.")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">i4"))
            count = math.prod(shape)
            header = 4 + len(dims)
            if count > MAX_IDX_BYTES or (not path.endswith(".gz") and header + count != os.path.getsize(path)):
                got = os.path.getsize(path) - header
                raise ValueError(f"Expected {count} values of shape {shape} in {path!r}, got a file with {got}.")
            payload = _read_at_most(f, count + 1)  # one more: a longer payload is as wrong as a shorter one
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError; a cut stream an EOFError
        raise ValueError(f"Expected a readable IDX file, got {path!r}: {type(error).__name__}: {error}") from None
    if len(payload) != count:
        raise ValueError(f"Expected {count} values of shape {shape} in {path!r}, got {len(payload)}.")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()  # writable, not a view of the bytes


# ------------------------------------------------------------------------------------- CIFAR's pickles, not unpickled

# numpy's integer dtypes, by the names numpy pickles them with (``numpy.dtype("u1", False, True)``)
_INTEGER_DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8")


class _NDArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: only as the class ``_reconstruct`` names, never called."""


class _DTypeBuilder:
    """``numpy.dtype(name, align, copy)`` of an integer dtype; BUILD sets its byte order."""

    def __init__(self, name: Any, align: Any = False, copy: Any = True) -> None:
        if name not in _INTEGER_DTYPES:
            raise ValueError(f"Expected an integer numpy dtype among {_INTEGER_DTYPES}, got {name!r}.")
        self.name, self.order = name, "|" if name in ("u1", "i1") else "<"

    def build(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise ValueError(f"Expected a numpy dtype's state (version, byte order, ...), got {state!r:.80}.")
        self.order = state[1]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.name).newbyteorder(self.order if self.order != "|" else "=")


def _array_from_bytes(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """An array over data bytes the file holds, of exactly the size its shape and dtype say."""
    if isinstance(raw, str):  # numpy's pickles from Python 2 keep the data as a latin-1 str
        raw = raw.encode("latin-1")
    if not isinstance(raw, (bytes, bytearray)) or not isinstance(dtype, _DTypeBuilder) or order not in ("C", "F"):
        got = f"{type(raw).__name__} data, dtype {type(dtype).__name__}, order {order!r:.10}"
        raise ValueError(f"Expected an array's data bytes, an integer dtype and an order 'C' or 'F', got {got}.")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):  # type(): no bools
        raise ValueError(f"Expected an array shape of non-negative ints, got {shape!r:.80}.")
    expected = math.prod(shape) * dtype.dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"Expected {expected} data bytes for an array of shape {shape} and dtype {dtype.name}, got {len(raw)}."
        )
    return np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order=order)


class _ArrayBuilder:
    """What numpy's ``_reconstruct(ndarray, (0,), b"b")`` stands for: an array whose data must follow (BUILD)."""

    array: np.ndarray | None = None

    def build(self, state: Any) -> None:
        # (version, shape, dtype, is_fortran, data), or without the version (older numpy)
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError(f"Expected a numpy array's state (shape, dtype, is_fortran, data), got {state!r:.80}.")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _array_from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayBuilder:
    if cls is not _NDArrayType:
        raise ValueError(f"Expected numpy's _reconstruct of numpy.ndarray, got one of {cls!r:.80}.")
    return _ArrayBuilder()


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode``: how Python 3's protocol 2 writes bytes (as a latin-1 str)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError(f"Expected _codecs.encode(str, 'latin1'), got {type(text).__name__} and {encoding!r:.20}.")
    return text.encode("latin-1")


# What the globals a CIFAR batch names stand for; everything else (numpy.ndarray's constructor included) is refused.
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _array_from_bytes,
    ("numpy._core.numeric", "_frombuffer"): _array_from_bytes,
    ("numpy", "ndarray"): _NDArrayType,
    ("numpy", "dtype"): _DTypeBuilder,
    ("_codecs", "encode"): _encode,
}
_CALLABLE = (_reconstruct, _array_from_bytes, _DTypeBuilder, _encode)


class PlainPickle:
    """Reads a pickle of plain data — dicts, lists, tuples, strings, bytes, numbers and integer numpy arrays — without
    unpickling it: each opcode is interpreted here, and no object other than those is ever made.

    Python 2's ``str`` (how the original CIFAR files hold keys and data) is read as ``bytes``.
    """

    _VALUES = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "UNICODE"}
    _VALUES |= {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
    _PY2_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING"}
    _CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
    _EMPTY = {"EMPTY_DICT": dict, "EMPTY_LIST": list, "EMPTY_TUPLE": tuple}
    _TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}  # a dict, not an array indexed by the file: no memo index bomb

    def load(self, data: bytes) -> Any:
        """The object the pickle ``data`` describes."""
        for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
            if opcode.name == "STOP":
                return self.stack.pop()
            try:
                self._step(opcode.name, arg)
            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as error:
                raise ValueError(f"at byte {pos} ({opcode.name}): {error}") from None
        raise ValueError("the pickle has no STOP")  # genops raises first; kept for a reader's certainty

    def _pop_mark(self) -> list[Any]:
        start = self.marks.pop()
        items, self.stack[start:] = self.stack[start:], []
        return items

    def _step(self, name: str, arg: Any) -> None:
        """One opcode: a branch per family (values, containers, memo); globals and calls in :meth:`_call`."""
        stack = self.stack
        if name in ("PROTO", "FRAME"):
            return
        if name in self._VALUES:
            stack.append(arg)
        elif name in self._PY2_STRINGS:
            stack.append(arg.encode("latin-1"))
        elif name == "BYTEARRAY8":
            stack.append(bytes(arg))
        elif name in self._CONSTANTS:
            stack.append(self._CONSTANTS[name])
        elif name in self._EMPTY:
            stack.append(self._EMPTY[name]())
        elif name == "MARK":
            self.marks.append(len(stack))
        elif name in ("TUPLE", "LIST"):
            items = self._pop_mark()
            stack.append(tuple(items) if name == "TUPLE" else items)
        elif name in self._TUPLES:
            n = self._TUPLES[name]
            if len(stack) < n:
                raise IndexError(f"{n} items needed, {len(stack)} on the stack")
            items, stack[-n:] = tuple(stack[-n:]), []
            stack.append(items)
        elif name == "DICT":
            items = self._pop_mark()
            stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name in ("APPEND", "APPENDS"):
            items = [stack.pop()] if name == "APPEND" else self._pop_mark()
            self._target(list).extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            items = stack[-2:] if name == "SETITEM" else self._pop_mark()
            if name == "SETITEM":
                del stack[-2:]
            self._target(dict).update(zip(items[::2], items[1::2], strict=True))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(self.memo[arg])
        elif name in ("POP", "DUP", "POP_MARK"):
            {"POP": stack.pop, "DUP": lambda: stack.append(stack[-1]), "POP_MARK": self._pop_mark}[name]()
        else:
            self._call(name, arg)

    def _target(self, kind: type) -> Any:
        if not self.stack or type(self.stack[-1]) is not kind:
            raise ValueError(f"expected a {kind.__name__} to add items to")
        return self.stack[-1]

    def _call(self, name: str, arg: Any) -> None:
        """GLOBAL / STACK_GLOBAL (allowed names only), REDUCE (of those only) and BUILD (of numpy's builders)."""
        stack = self.stack
        if name in ("GLOBAL", "STACK_GLOBAL"):
            module, attr = arg.split(" ", 1) if name == "GLOBAL" else stack[-2:]
            if name == "STACK_GLOBAL":
                del stack[-2:]
            if (module, attr) not in _GLOBALS:
                raise ValueError(
                    f"Expected a CIFAR batch of plain data and numpy arrays, got a reference to {module}.{attr}."
                )
            stack.append(_GLOBALS[(module, attr)])
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            if not any(func is allowed for allowed in _CALLABLE) or not isinstance(args, tuple):
                raise ValueError(f"Expected a call of numpy's array or dtype builders, got {func!r:.80}.")
            stack.append(func(*args))
        elif name == "BUILD":
            state, target = stack.pop(), stack[-1]
            if not isinstance(target, (_ArrayBuilder, _DTypeBuilder)):
                raise ValueError(f"Expected BUILD of a numpy array or dtype, got one of {type(target).__name__}.")
            target.build(state)
        else:
            raise ValueError(f"Expected a pickle of plain data and numpy arrays, got the opcode {name}.")


def _array_of(value: Any, what: str) -> np.ndarray:
    if isinstance(value, _ArrayBuilder):
        if value.array is None:  # _reconstruct without its BUILD: numpy would serve uninitialized memory
            raise ValueError(f"Expected {what} to be an array with its data, got an array without data.")
        return value.array
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return np.asarray(value, dtype=np.int64)
    raise ValueError(f"Expected {what} to be an integer array or a list of ints, got {type(value).__name__}.")


def read_cifar_batch(path: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file: ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels.

    Raises:
        ValueError: naming the file, if it is empty, larger than :data:`MAX_BATCH_BYTES`, truncated, not a pickle,
            refers to anything but plain data and numpy arrays, or does not hold ``(N, 3072)`` uint8 data and ``N``
            integer labels.
    """
    _check_size(path, MAX_BATCH_BYTES)
    with open(path, "rb") as f:
        data = f.read()
    try:
        entry = PlainPickle().load(data)
    except ValueError as error:  # genops' own for a truncated file or unknown opcode; ours for refused content
        raise ValueError(f"Expected a CIFAR batch (a pickle of plain data), got {path!r}: {error}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"Expected a CIFAR batch (a dict), got {type(entry).__name__} in {path!r}.")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise ValueError(f"Expected the keys 'data' and {label_key!r} in {path!r}, got {sorted(map(str, entry))}.")
    data = _array_of(entry["data"], f"'data' in {path!r}")
    labels = _array_of(entry[label_key], f"{label_key!r} in {path!r}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise ValueError(
            f"Expected uint8 data of shape (N, 3072) and N labels in {path!r}, got {data.dtype} {data.shape} and "
            f"labels of shape {labels.shape}."
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)  # rows are R, G, B planes of 32x32, row-major


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
        if len(labels) and int(labels.max()) >= num_classes:
            raise ValueError(f"Expected labels in [0, {num_classes}) in {path!r}, got up to {int(labels.max())}.")
        return images[:, None], labels.astype(np.int64), num_classes  # (N, H, W) -> (N, 1, H, W)
    _, folder, files, label_key, num_classes = CIFAR_DATASETS[name]
    batches = []
    for file in files[split]:
        path = os.path.join(root, folder, file)
        if not os.path.exists(path):
            raise _missing(name, root, os.path.join(folder, file))
        data, labels = read_cifar_batch(path, label_key)
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            got = f"[{int(labels.min())}, {int(labels.max())}]"
            raise ValueError(f"Expected {label_key!r} in [0, {num_classes}) in {path!r}, got labels in {got}.")
        batches.append((data, labels))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), num_classes
