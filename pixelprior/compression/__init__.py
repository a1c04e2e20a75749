"""Lossless compression with a prior: :func:`compress` and :func:`decompress` (DESIGN.md section 5b).

A prior's exact likelihood is a code: a grid ``x`` costs ``-log2 p(x)`` bits through an entropy coder (constriction's
range coder). :mod:`.coder` runs the coding loop, :mod:`.container` lays out the bytes.

Example:
    >>> import torch
    >>> from pixelprior import create_prior
    >>> from pixelprior.compression import compress, decompress
    >>> prior = create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1, sample_size=8).eval()
    >>> x = torch.randint(0, 2, (3, 1, 8, 8))
    >>> data = compress(prior, x)
    >>> bool((decompress(prior, data) == x).all())
    True
"""

from .coder import (
    CODER,
    PRECISION,
    DecodedStream,
    check_stream,
    compress,
    content_digest,
    current_conditions,
    decode,
    decompress,
    model_fingerprint,
)
from .container import FORMAT_VERSION, MAGIC, Conditions, StreamHeader, pack, unpack

__all__ = [
    "CODER",
    "FORMAT_VERSION",
    "MAGIC",
    "PRECISION",
    "Conditions",
    "DecodedStream",
    "StreamHeader",
    "check_stream",
    "compress",
    "content_digest",
    "current_conditions",
    "decode",
    "decompress",
    "model_fingerprint",
    "pack",
    "unpack",
]
