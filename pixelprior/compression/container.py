"""The byte layout of a compressed stream: a versioned, checksummed container around the range coder's words.

Layout of format version 1 (integers little-endian)::

    offset  size  field
    0       4     magic b"PXPC"
    4       2     format version (uint16)
    6       4     header length L in bytes (uint32)
    10      L     header: UTF-8 JSON of a StreamHeader (the model's fingerprint, the decoding conditions, the grid
                  shape and count, how labels and cond are stored, the coder and its precision, the number of
                  payload words, a SHA-256 of the decoded content, optional image names)
    10+L    ...   cond: the spatial condition's raw bytes when the model takes one (``cond_dtype``, ``cond_shape``)
    ...     4 n   payload: the range coder's n 32-bit words (the labels, then the grids)
    end-32  32    SHA-256 of every byte before it

Everything here is about bytes; what the fields mean for decoding is :mod:`pixelprior.compression.coder`'s. Any
stream this module cannot read exactly (another magic, another version, a checksum that does not match, a header
with missing, extra or mistyped fields, lengths that do not add up) raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"PXPC"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sHI")  # magic, version, header length
_DIGEST = 32  # SHA-256 trailer
_MAX_HEADER = 1 << 30  # bytes: far beyond any real header (names of a million images), a sign of a corrupted length


@dataclass(frozen=True)
class Conditions:
    """What must be the same for a stream to decode: the conditions under which both sides compute the same floats.

    The decoder recomputes every probability the encoder used, with the same model, in the same order; the same
    floats come out only on the same kind of device, in the same dtype, with the same torch (its kernels) and the
    same CPU instruction set (``torch.backends.cpu.get_cpu_capability()``), the same CUDA device and cuDNN on a GPU,
    and the same intra-op thread count (the decoder sets it for the duration), and constriction's quantization of
    them to its fixed point is the same only with the same constriction.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"`` (the model's device when coding).
        dtype: the model's dtype, e.g. ``"float32"``.
        torch_version: ``torch.__version__``.
        constriction_version: the entropy coder's version.
        num_threads: ``torch.get_num_threads()`` while coding.
        cpu_capability: the instruction set torch's CPU kernels dispatch to (``"AVX2"``, ``"AVX512"``, ...).
        cuda_device: the GPU's name and cuDNN version when coding on a GPU, else ``None``.
    """

    device_type: str
    dtype: str
    torch_version: str
    constriction_version: str
    num_threads: int
    cpu_capability: str
    cuda_device: str | None


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs besides the model, and what it checks the model and itself against.

    Attributes:
        model_class: the prior's class name.
        model_fingerprint: SHA-256 (hex) of the prior's configuration and weights
            (:func:`pixelprior.compression.model_fingerprint`).
        conditions: the :class:`Conditions` the stream was coded under.
        shape: ``(N, C, H, W)`` of the coded grids.
        num_values: values per channel.
        num_classes: the class count when class labels are coded in the stream (uniformly, first), else ``None``.
        cond_dtype: the spatial condition's dtype when one is stored (raw, after the header), else ``None``.
        cond_shape: ``(N, cond_channels, H, W)`` of the stored condition, else ``None``.
        batch_size: grids per raster loop (the decoder runs the same batches: the same floats).
        use_cache: whether the cached step (``True``) or the plain loop computed the parameters.
        coder: the entropy coder.
        precision: its probability precision in bits.
        payload_words: the number of 32-bit words of coded data.
        content_sha256: SHA-256 (hex) of the grids and labels (:func:`pixelprior.compression.coder.content_digest`).
        names: one name per grid (the CLI stores the images' file names), or ``None``.
    """

    model_class: str
    model_fingerprint: str
    conditions: Conditions
    shape: tuple[int, int, int, int]
    num_values: int
    num_classes: int | None
    cond_dtype: str | None
    cond_shape: tuple[int, int, int, int] | None
    batch_size: int
    use_cache: bool
    coder: str
    precision: int
    payload_words: int
    content_sha256: str
    names: tuple[str, ...] | None


def pack(header: StreamHeader, cond: bytes, words: np.ndarray) -> bytes:
    """The container's bytes: prefix, header, condition, payload words and the SHA-256 trailer."""
    text = json.dumps(dataclasses.asdict(header), separators=(",", ":"), sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)) + text + cond + words.astype("<u4").tobytes()
    return body + hashlib.sha256(body).digest()


def unpack(data: Any) -> tuple[StreamHeader, bytes, np.ndarray]:
    """Check a container and split it into its header, its condition's bytes and its payload words.

    Raises:
        ValueError: for anything but a complete, unaltered stream of this format version.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"Expected the bytes of a pixelprior stream, got {type(data).__name__}.")
    data = bytes(data)
    if len(data) < _PREFIX.size + _DIGEST or data[:4] != MAGIC:
        raise ValueError(
            f"Expected a pixelprior stream (starting with {MAGIC!r}, at least {_PREFIX.size + _DIGEST} bytes), got "
            f"{len(data)} bytes starting with {data[:4]!r}."
        )
    _, version, header_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ValueError(f"Expected stream format version {FORMAT_VERSION}, got version {version}.")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise ValueError("Expected an intact stream, got a corrupted or truncated one (its SHA-256 does not match).")
    if header_len > min(_MAX_HEADER, len(body) - _PREFIX.size):
        raise ValueError(f"Expected a header within the stream, got a header length of {header_len} bytes.")
    end = _PREFIX.size + header_len
    header = _parse_header(body[_PREFIX.size : end])
    cond_len = _cond_bytes(header)
    payload = body[end + cond_len :]
    if len(payload) != 4 * header.payload_words:
        raise ValueError(
            f"Expected {4 * header.payload_words} payload bytes after the header and condition, got {len(payload)}."
        )
    return header, body[end : end + cond_len], np.frombuffer(payload, dtype="<u4").astype(np.uint32)


# ---------------------------------------------------------------------------------------------- header parsing
_COND_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _cond_bytes(header: StreamHeader) -> int:
    if (header.cond_dtype is None) != (header.cond_shape is None):
        raise ValueError("Expected both cond_dtype and cond_shape in the stream header, or neither.")
    if header.cond_dtype is None:
        return 0
    if header.cond_dtype not in _COND_ITEMSIZE:
        raise ValueError(f"Expected a cond_dtype among {sorted(_COND_ITEMSIZE)}, got {header.cond_dtype!r}.")
    return int(np.prod(header.cond_shape)) * _COND_ITEMSIZE[header.cond_dtype]


def _parse_header(text: bytes) -> StreamHeader:
    try:
        fields = json.loads(text.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Expected a JSON stream header, got unreadable bytes ({error}).") from None
    fields = _fields(StreamHeader, fields)
    fields["conditions"] = Conditions(**_fields(Conditions, fields["conditions"]))
    return StreamHeader(**fields)


# The JSON type each field must have (tuples arrive as lists): (types, nullable, element type of a list, its length).
_TYPES: dict[str, tuple[type, bool, type | None, int | None]] = {
    "device_type": (str, False, None, None),
    "dtype": (str, False, None, None),
    "torch_version": (str, False, None, None),
    "constriction_version": (str, False, None, None),
    "num_threads": (int, False, None, None),
    "cpu_capability": (str, False, None, None),
    "cuda_device": (str, True, None, None),
    "model_class": (str, False, None, None),
    "model_fingerprint": (str, False, None, None),
    "conditions": (dict, False, None, None),
    "shape": (list, False, int, 4),
    "num_values": (int, False, None, None),
    "num_classes": (int, True, None, None),
    "cond_dtype": (str, True, None, None),
    "cond_shape": (list, True, int, 4),
    "batch_size": (int, False, None, None),
    "use_cache": (bool, False, None, None),
    "coder": (str, False, None, None),
    "precision": (int, False, None, None),
    "payload_words": (int, False, None, None),
    "content_sha256": (str, False, None, None),
    "names": (list, True, str, None),
}


def _fields(cls: type, obj: Any) -> dict[str, Any]:
    """The fields of ``cls`` from a JSON object, each of its declared type (ints non-negative), lists as tuples."""
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(obj, dict) or set(obj) != set(names):
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"Expected the {cls.__name__} fields {sorted(names)}, got {got}.")
    out = {}
    for name in names:
        kind, nullable, item, length = _TYPES[name]
        value = obj[name]
        if value is None and nullable:
            out[name] = None
            continue
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if ok and kind is int:
            ok = value >= 0
        if ok and kind is list:
            ok = (length is None or len(value) == length) and all(
                isinstance(v, item) and not isinstance(v, bool) and (item is not int or v >= 0) for v in value
            )
            value = tuple(value)
        if not ok:
            raise ValueError(f"Expected the stream header's {name} to be a {kind.__name__}, got {obj[name]!r}.")
        out[name] = value
    return out
