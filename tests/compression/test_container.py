"""The container's fuzz test: truncated or bit-flipped streams, and altered payloads under a valid trailer, all decode
to a ValueError, never to grids. CI runs a small fixed sample; PIXELPRIOR_FUZZ=N runs N of each by hand."""

from __future__ import annotations

import hashlib
import os
import random
import struct

import pytest
import torch

from pixelprior.compression import compress, decompress
from pixelprior.compression.container import _DIGEST
from tests.conftest import random_x, tiny_prior

SAMPLES = int(os.environ.get("PIXELPRIOR_FUZZ", "8"))


@pytest.fixture(scope="module")
def stream():
    model = tiny_prior("pixelcnn_pp_mnist", dtype=torch.float32, num_values=16, in_channels=3)
    x = random_x(model, 2)
    return model, x, compress(model, x)


def resealed(body: bytes) -> bytes:
    """``body`` with a valid SHA-256 trailer: an alteration the trailer cannot see."""
    return body + hashlib.sha256(body).digest()


def test_truncations_and_bit_flips_are_refused(stream):
    model, _, data = stream
    rng = random.Random(0)
    cuts = [0, 1, 9, len(data) - 1] + [rng.randrange(len(data)) for _ in range(SAMPLES)]
    for cut in cuts:
        with pytest.raises(ValueError):
            decompress(model, data[:cut])
    for _ in range(SAMPLES):
        flipped = bytearray(data)
        bit = rng.randrange(8 * len(data))
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ValueError):
            decompress(model, bytes(flipped))


def refused_or_exact(model, data: bytes, x: torch.Tensor) -> bool:
    """True when ``data`` is refused with a ValueError; else its grids must be exactly ``x`` (an alteration the format
    does not read, such as slack bits of the coder's last word or another batch size that gives the same batches)."""
    try:
        decoded = decompress(model, data)
    except ValueError:
        return True
    assert torch.equal(decoded, x), "an altered stream decoded to other grids"
    return False


def test_altered_streams_under_a_valid_trailer_are_refused(stream):
    # The decoder itself meets altered data here: the header checks or the checksum of the decoded grids refuse it.
    model, x, data = stream
    body = data[:-_DIGEST]
    payload = 10 + struct.unpack_from("<I", body, 6)[0]  # the payload follows the prefix and the JSON header
    rng = random.Random(1)
    refused = 0
    for _ in range(SAMPLES):
        flipped = bytearray(body)
        bit = rng.randrange(8 * (len(body) - payload))
        flipped[payload + bit // 8] ^= 1 << (bit % 8)
        refused += refused_or_exact(model, resealed(bytes(flipped)), x)
    for _ in range(SAMPLES):
        flipped = bytearray(body)
        flipped[rng.randrange(10, payload)] ^= 1 << rng.randrange(8)  # inside the header
        refused += refused_or_exact(model, resealed(bytes(flipped)), x)
    assert refused >= SAMPLES  # most alterations change what is decoded, and every such one is refused
