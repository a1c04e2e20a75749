"""Lossless coding of integer grids with a prior: ``-log2 p(x)`` bits through constriction's range coder.

Both sides run the one raster loop (:func:`pixelprior.sampling.raster_loop`) from an all-zero canvas, with the same
cached step, in the same batches: the encoder's ``draw`` codes the true values of each step and returns them, the
decoder's decodes them. The canvas is therefore the same on both sides at every step, and so are the parameters,
bit for bit, under the :class:`~pixelprior.compression.container.Conditions` recorded in the stream. Each channel
is coded from its pmf given the channels before it (:meth:`~pixelprior.distributions.Likelihood.channel_log_pmf`:
the categorical likelihood's softmax, or the logistic mixture's exact R, G given R, B given R and G), computed in
float64 and quantized by constriction (``Categorical(perfect=False)``: deterministic, every value keeps at least
the smallest probability of its 24-bit fixed point, so every grid is codable).

Class labels are coded first, uniformly over the classes (``log2(num_classes)`` bits each); a spatial condition is
stored raw. The decoder checks the model's fingerprint and the conditions before decoding and a SHA-256 of the
decoded grids and labels after: another model, another format version, other conditions or a corrupted stream
raise ``ValueError``, never wrong pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import constriction
import numpy as np
import torch

from ..sampling import raster_loop
from ..vqmodel import vqvae_identity
from .container import Conditions, StreamHeader, pack, unpack

if TYPE_CHECKING:
    from ..models.modeling_prior import AutoregressivePrior

CODER = "constriction.stream.queue.RangeEncoder"
PRECISION = 24  # constriction's categorical models: 24-bit probabilities (32-bit words, 64-bit state)
DEFAULT_BATCH_SIZE = 100


@dataclass(frozen=True)
class DecodedStream:
    """What :func:`decode` returns.

    Attributes:
        x: ``(N, C, H, W)`` long, the grids.
        class_labels: ``(N,)`` long, or ``None``.
        cond: the spatial condition ``(N, cond_channels, H, W)`` as the encoder's model saw it, or ``None``.
        names: the names stored with the grids, or ``None``.
        header: the stream's :class:`~pixelprior.compression.container.StreamHeader`.
    """

    x: torch.Tensor
    class_labels: torch.Tensor | None
    cond: torch.Tensor | None
    names: tuple[str, ...] | None
    header: StreamHeader


# ------------------------------------------------------------------------------------------------ identities
def model_fingerprint(prior: AutoregressivePrior) -> str:
    """SHA-256 (hex) of a prior's class, public configuration and every tensor of its state (names, dtypes, shapes,
    bytes): two priors with the same fingerprint compute the same parameters from the same inputs."""
    config_text, _ = vqvae_identity(prior.config)  # the canonical JSON of a diffusers config, private keys left out
    digest = hashlib.sha256(f"{type(prior).__name__}\n{config_text}\n".encode())
    for name, tensor in sorted(prior.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def current_conditions(prior: AutoregressivePrior) -> Conditions:
    """The :class:`~pixelprior.compression.container.Conditions` a stream coded with ``prior`` now would record."""
    device = prior.device
    cuda = None
    if device.type == "cuda":
        cuda = f"{torch.cuda.get_device_name(device)}; cudnn {torch.backends.cudnn.version()}"
    return Conditions(
        device_type=device.type,
        dtype=str(prior.dtype).removeprefix("torch."),
        torch_version=torch.__version__,
        constriction_version=version("constriction"),
        num_threads=torch.get_num_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cuda_device=cuda,
    )


def content_digest(x: torch.Tensor, class_labels: torch.Tensor | None) -> str:
    """SHA-256 (hex) of the grids and the labels as little-endian int64: what a decoded stream must reproduce."""
    digest = hashlib.sha256(x.detach().cpu().numpy().astype("<i8").tobytes())
    if class_labels is not None:
        digest.update(class_labels.detach().cpu().numpy().astype("<i8").tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def coding_conditions(conditions: Conditions) -> Iterator[None]:
    """Run with the stream's thread count and deterministic GPU kernels (no TF32, no cuDNN autotuning); restore."""
    threads = torch.get_num_threads()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.set_num_threads(conditions.num_threads)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


# ------------------------------------------------------------------------------------------------------ coding
class _ChannelCoder:
    """The ``draw`` of the raster loop for one side of a code: each channel from its pmf, through the range coder."""

    def __init__(self, prior: AutoregressivePrior, coder: Any, truth: torch.Tensor | None) -> None:
        self.dist, self.coder, self.truth = prior.distribution, coder, truth  # truth: (B, C, H, W) when encoding
        self.family = constriction.stream.model.Categorical(perfect=False)

    def __call__(
        self, params: torch.Tensor, values: torch.Tensor, channels: tuple[int, ...], i: int, j: int
    ) -> torch.Tensor:
        values = values.clone()  # (B, C): this position's channels coded so far
        for c in channels:
            probs = self.dist.channel_log_pmf(params, values, c).exp()  # (B, K) float64
            if not bool(torch.isfinite(probs).all()):
                raise ValueError(f"Expected finite distribution parameters, got non-finite ones at ({i}, {j}).")
            probs = probs.cpu().numpy()
            if self.truth is not None:
                symbols = self.truth[:, c, i, j]
                self.coder.encode(symbols.cpu().numpy().astype(np.int32), self.family, probs)
            else:
                symbols = torch.from_numpy(self.coder.decode(self.family, probs).astype(np.int64))
            values[:, c] = symbols.to(values.device)
        return values[:, list(channels)]


def _code_grids(
    prior: AutoregressivePrior,
    coder: Any,
    truth: torch.Tensor | None,
    count: int,
    class_labels: torch.Tensor | None,
    cond: torch.Tensor | None,
    batch_size: int,
    use_cache: bool,
    progress: bool,
) -> torch.Tensor:
    """Run the raster loop over ``count`` grids in batches, encoding ``truth`` or decoding; return the grids."""
    C, (H, W) = prior.in_channels, prior.grid_size
    out = []
    for start in range(0, count, batch_size):
        rows = slice(start, min(start + batch_size, count))
        canvas = torch.zeros(rows.stop - rows.start, C, H, W, dtype=torch.long, device=prior.device)
        draw = _ChannelCoder(prior, coder, None if truth is None else truth[rows])
        labels = None if class_labels is None else class_labels[rows]
        cond_rows = None if cond is None else cond[rows]
        out.append(
            raster_loop(prior, canvas, canvas.bool(), labels, cond_rows, draw, use_cache=use_cache, progress=progress)
        )
    return torch.cat(out)


def _check_names(names: Sequence[str] | None, count: int) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str) or len(names) != count or not all(isinstance(n, str) for n in names):
        raise ValueError(f"Expected one name (a str) per grid, {count} in all, got {names!r:.200}.")
    return tuple(names)


def compress(
    prior: AutoregressivePrior,
    x: torch.Tensor,
    *,
    class_labels: torch.Tensor | int | None = None,
    cond: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    use_cache: bool = True,
    progress: bool = False,
) -> bytes:
    """Code grids losslessly with ``prior``: about ``sum(-log2 p(x))`` bits, plus a header of a few hundred bytes.

    Args:
        prior: any :class:`~pixelprior.AutoregressivePrior`; the decoder needs the same one (same fingerprint).
        x: ``(N, C, H, W)`` integer grids (``(N, H, W)`` when ``C = 1``) in ``[0, num_values)``.
        class_labels: ``(N,)`` labels (or one int) for a class-conditional prior; coded in the stream.
        cond: ``(N, cond_channels, h, w)`` spatial condition for a spatially conditioned prior; stored raw.
        names: one name per grid, stored in the stream (the CLI stores file names).
        batch_size: grids per raster loop; the decoder runs the same batches.
        use_cache: the cached step (default) or the plain loop computes the parameters; the decoder does the same.
        progress: show a progress bar per batch.

    Returns:
        The stream's bytes (:mod:`pixelprior.compression.container`).

    Raises:
        ValueError: for invalid grids or conditioning (the prior's checks), a bad ``names`` or ``batch_size``, or
            non-finite distribution parameters.

    Shapes:
        x: ``(N, C, H, W)`` -> bytes
    """
    x = prior.check_x(x)
    if not len(x):
        raise ValueError(f"Expected at least one grid to compress, got x of shape {tuple(x.shape)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected batch_size to be a positive int, got {batch_size!r}.")
    class_labels, cond = prior.check_conditioning(len(x), class_labels, cond)
    names = _check_names(names, len(x))
    conditions = current_conditions(prior)
    encoder = constriction.stream.queue.RangeEncoder()
    with coding_conditions(conditions):
        if class_labels is not None and prior.num_classes > 1:
            labels = class_labels.cpu().numpy().astype(np.int32)
            encoder.encode(labels, constriction.stream.model.Uniform(prior.num_classes))
        _code_grids(prior, encoder, x, len(x), class_labels, cond, batch_size, use_cache, progress)
    cond_bytes = b"" if cond is None else cond.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
    words = encoder.get_compressed()
    header = StreamHeader(
        model_class=type(prior).__name__,
        model_fingerprint=model_fingerprint(prior),
        conditions=conditions,
        shape=tuple(x.shape),
        num_values=prior.num_values,
        num_classes=None if class_labels is None else prior.num_classes,
        cond_dtype=None if cond is None else str(cond.dtype).removeprefix("torch."),
        cond_shape=None if cond is None else tuple(cond.shape),
        batch_size=batch_size,
        use_cache=use_cache,
        coder=CODER,
        precision=PRECISION,
        payload_words=len(words),
        content_sha256=content_digest(x, class_labels),
        names=names,
    )
    return pack(header, cond_bytes, words)


def check_stream(prior: AutoregressivePrior, header: StreamHeader) -> None:
    """Check that ``prior`` can decode a stream with this header, here and now (model, grid, coder, conditions).

    Raises:
        ValueError: saying what the stream needs and what was got.
    """
    if header.coder != CODER or header.precision != PRECISION:
        raise ValueError(
            f"Expected a stream of {CODER} at {PRECISION}-bit precision, got {header.coder} at {header.precision} "
            "bits."
        )
    N, C, H, W = header.shape
    names_ok = header.names is None or len(header.names) == N
    cond_ok = header.cond_shape is None or header.cond_shape[0] == N
    if N < 1 or header.batch_size < 1 or not names_ok or not cond_ok:
        raise ValueError(
            f"Expected a stream of at least one grid, a positive batch size, and one name and condition per grid, "
            f"got {N} grids, batch size {header.batch_size}, {len(header.names or ())} names and a condition of shape "
            f"{header.cond_shape}."
        )
    expected = (prior.in_channels, *prior.grid_size, prior.num_values)
    if (C, H, W, header.num_values) != expected or type(prior).__name__ != header.model_class:
        raise ValueError(
            f"Expected the model the stream was coded with: a {header.model_class} over {C}x{H}x{W} grids of "
            f"{header.num_values} values, got a {type(prior).__name__} over {expected[0]}x{expected[1]}x"
            f"{expected[2]} grids of {expected[3]} values."
        )
    here = current_conditions(prior)
    for field in ("device_type", "dtype", "torch_version", "constriction_version", "cpu_capability", "cuda_device"):
        want, got = getattr(header.conditions, field), getattr(here, field)
        if want != got:
            raise ValueError(
                f"Expected the conditions the stream was coded under ({field} {want!r}: the decoder must compute the "
                f"encoder's floats bit for bit), got {field} {got!r}."
            )
    if (header.num_classes is not None) != (prior.num_classes is not None) or (
        header.num_classes is not None and header.num_classes != prior.num_classes
    ):
        raise ValueError(f"Expected a model with num_classes={header.num_classes}, got {prior.num_classes}.")
    fingerprint = model_fingerprint(prior)
    if fingerprint != header.model_fingerprint:
        raise ValueError(
            f"Expected the model the stream was coded with (fingerprint {header.model_fingerprint[:16]}...), got "
            f"another one (fingerprint {fingerprint[:16]}...): other weights or another configuration."
        )


def decode(prior: AutoregressivePrior, data: bytes, *, progress: bool = False) -> DecodedStream:
    """Decode a stream written by :func:`compress` with the same prior: the grids, labels, condition and names.

    Raises:
        ValueError: for anything but an intact stream of this format coded by this prior under these conditions
            (another model or format version, a corrupted or truncated stream, another device, dtype, torch or
            constriction version), or decoded grids that do not match the stream's checksum.
    """
    header, cond_bytes, words = unpack(data)
    check_stream(prior, header)
    N = header.shape[0]
    cond = None
    if header.cond_dtype is not None:
        dtype = getattr(torch, header.cond_dtype)
        cond = torch.frombuffer(bytearray(cond_bytes), dtype=torch.uint8).view(dtype).reshape(header.cond_shape)
    placeholder = torch.zeros(N, dtype=torch.long) if header.num_classes else None  # the labels are decoded below
    class_labels, cond = prior.check_conditioning(N, placeholder, cond)
    decoder = constriction.stream.queue.RangeDecoder(words)
    with coding_conditions(header.conditions):
        if class_labels is not None and prior.num_classes > 1:
            labels = decoder.decode(constriction.stream.model.Uniform(prior.num_classes), N)
            class_labels = torch.from_numpy(labels.astype(np.int64)).to(prior.device)
        x = _code_grids(prior, decoder, None, N, class_labels, cond, header.batch_size, header.use_cache, progress)
    if content_digest(x, class_labels) != header.content_sha256:
        raise ValueError(
            "Expected decoded grids matching the stream's SHA-256, got others: the stream was altered, or this "
            "machine computes other floats than the encoder's under the same recorded conditions."
        )
    return DecodedStream(x=x, class_labels=class_labels, cond=cond, names=header.names, header=header)


def decompress(prior: AutoregressivePrior, data: bytes) -> torch.Tensor:
    """The grids of a stream written by :func:`compress` with the same prior (see :func:`decode`).

    Shapes:
        bytes -> ``(N, C, H, W)`` long
    """
    return decode(prior, data).x
