"""State dicts of pclucas14/pixel-cnn-pp, the most-used PyTorch port of PixelCNN++, as pixelprior pipelines, exactly.

The port (https://github.com/pclucas14/pixel-cnn-pp, ``model.py`` / ``layers.py``) releases plain ``state_dict``
files (``torch.save(model.state_dict())``, sometimes saved from ``nn.DataParallel`` with every key prefixed
``module.``). Its ``PixelCNN`` is pixelprior's :class:`~pixelprior.PixelCNNPlusPlus` layer for layer; its sizes are
read from the tensors: ``nr_filters`` (``hidden_channels``) and the data channels from ``u_init``'s weight,
``nr_resnet`` (``num_layers``) from the number of blocks of the first stage, ``nr_logistic_mix`` (``num_mixtures``)
from the output layer. Its modules map as follows (``s`` a stage, ``k`` a block; the port runs its down pass coarsest
first, so its down-pass stage ``i`` is pixelprior's stage ``2 - i`` and its upsampling ``i`` is pixelprior's
``1 - i``):

===============================================  ======================================================
the port                                         pixelprior
===============================================  ======================================================
``u_init.conv``                                  ``u_init``
``ul_init.0.conv`` / ``ul_init.1.conv``          ``ul_init_up`` / ``ul_init_left``
``up_layers.s.{u,ul}_stream.k``                  ``up_{u,ul}.s.k``
``down_layers.i.{u,ul}_stream.k``                ``down_{u,ul}.(2 - i).k``
``  .conv_input.conv`` / ``.conv_out.conv``      ``  .conv_in`` / ``.conv_out``
``  .nin_skip.lin_a`` (a ``Linear``)             ``  .link`` (a ``1 x 1`` convolution)
``downsize_{u,ul}_stream.s.conv``                ``downsample_{u,ul}.s``
``upsize_{u,ul}_stream.i.deconv``                ``upsample_{u,ul}.(1 - i)``
``nin_out.lin_a``                                ``output`` (rows permuted, below)
===============================================  ======================================================

Two rules need more than a copy:

* **Weight norm of the transposed convolutions.** The port wraps every layer in ``torch.nn.utils.weight_norm`` with
  its default ``dim=0`` (``weight_g``, ``weight_v``). For a ``Conv2d`` or ``Linear`` weight ``(out, in, ...)`` that is
  one norm per output map, as pixelprior's, and ``g`` and ``v`` are copied (a ``Linear``'s reshaped to ``1 x 1``).
  A ``ConvTranspose2d`` weight is ``(in, out, kh, kw)``, so there ``dim=0`` normalizes per *input* map, while
  pixelprior (and OpenAI's reference) normalize per output map: copying ``g`` and ``v`` would be silently wrong. The
  converter folds the port's ``w = g v / ||v||`` (norms over dims 1, 2, 3) into the plain weight and sets
  pixelprior's ``v = w``, ``g = ||w||`` (norms over dims 0, 2, 3), the same weight.
* **The output layout.** The port's ``discretized_mix_logistic_loss`` reads its ``10 M`` (RGB) output maps as
  ``M`` mixture logits, then per channel ``c`` the block ``[means | log scales | coefficients]`` of ``M`` maps
  each (coefficient block ``c`` couples the pair ``(1, 0)``, ``(2, 0)``, ``(2, 1)`` for ``c = 0, 1, 2``); its
  one-channel loss reads ``3 M`` maps as ``[logits | means | log scales]``. pixelprior's logistic mixture groups
  them by kind (:mod:`pixelprior.distributions.logistic_mixture`), so the output rows are permuted.

The port's sigmoid-and-clamp details agree with pixelprior's likelihood (edge bins, the ``1e-5`` fallback to the
density at the bin centre, log scales floored at -7), so the converted model's NLL equals the port's
``discretized_mix_logistic_loss``; the port's ``Dropout2d`` (whole maps) becomes pixelprior's elementwise dropout,
which matters for fine-tuning only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from ..models.pixelcnn_pp import NUM_STAGES, PixelCNNPlusPlus
from ..pipelines import PixelPriorPipeline
from .checkpoints import as_dtype, check_layout, read_state_dict, strip_prefix

LAYOUT = "pclucas14/pixel-cnn-pp's PixelCNN (weight_g / weight_v of torch.nn.utils.weight_norm)"
WN = "parametrizations.weight"  # pixelprior's weight norm: .original0 = g, .original1 = v


@dataclass(frozen=True)
class PortSizes:
    """The sizes of a port checkpoint, read from its tensors."""

    in_channels: int  # data channels C (1 or 3)
    hidden_channels: int  # nr_filters
    num_layers: int  # nr_resnet
    num_mixtures: int  # nr_logistic_mix


@dataclass(frozen=True)
class _Layer:
    """One weight-normed layer: its name in the port, in pixelprior, its kind and its weight's shape in the port."""

    port: str  # e.g. "up_layers.0.u_stream.1.conv_input.conv"
    ours: str  # e.g. "up_u.0.1.conv_in"
    kind: str  # "conv", "linear" (the port's nin: a Linear, pixelprior's 1x1 conv) or "deconv"
    shape: tuple[int, ...]  # the port's weight_v


def _port_outputs(in_channels: int) -> int:
    """Output maps per mixture component of the port: 3 for one channel, 10 otherwise (its two losses)."""
    return 3 if in_channels == 1 else 10


def infer_sizes(state: dict[str, torch.Tensor]) -> PortSizes:
    """Read the sizes from the tensors; raises ``ValueError`` (listing keys) for a state dict of another layout."""
    needed = ["u_init.conv.weight_v", "nin_out.lin_a.weight_v"]
    if not all(key in state for key in needed):
        num_layers = _count_blocks(state)
        check_layout(state, expected_layout(PortSizes(3, 1, num_layers, 1)), LAYOUT)
    hidden, in_plus_one = state["u_init.conv.weight_v"].shape[:2]
    in_channels = int(in_plus_one) - 1
    if in_channels not in (1, 3):
        raise ValueError(f"Expected a port model of 1 or 3 data channels, got u_init for {in_channels} channels.")
    outputs, per_mixture = state["nin_out.lin_a.weight_v"].shape[0], _port_outputs(in_channels)
    if outputs % per_mixture:
        raise ValueError(
            f"Expected {per_mixture} M output maps (M mixtures) for {in_channels} channels, got {outputs}."
        )
    return PortSizes(in_channels, int(hidden), _count_blocks(state), outputs // per_mixture)


def _count_blocks(state: dict[str, torch.Tensor]) -> int:
    pattern = re.compile(r"up_layers\.0\.u_stream\.(\d+)\.")
    return len({m.group(1) for key in state if (m := pattern.match(key))})


def _layers(sizes: PortSizes) -> list[_Layer]:
    """Every weight-normed layer of a port model of these sizes, in both namings."""
    C, F, R = sizes.in_channels, sizes.hidden_channels, sizes.num_layers
    P = sizes.num_mixtures * _port_outputs(C)
    layers = [
        _Layer("u_init.conv", "u_init", "conv", (F, C + 1, 2, 3)),
        _Layer("ul_init.0.conv", "ul_init_up", "conv", (F, C + 1, 1, 3)),
        _Layer("ul_init.1.conv", "ul_init_left", "conv", (F, C + 1, 2, 1)),
        _Layer("nin_out.lin_a", "output", "linear", (P, F)),
    ]
    kernels = {"u": (2, 3), "ul": (2, 2)}
    for stream, kernel in kernels.items():
        for s in range(NUM_STAGES):
            # Up pass: u blocks have no skip input, ul blocks read u (F maps). Down pass: u reads the u skip (F),
            # ul reads [u, ul skip] (2 F); the port's down stage i is pixelprior's 2 - i, with R + 1 blocks below it.
            down = f"down_layers.{NUM_STAGES - 1 - s}"
            for port_stage, ours, n, aux in (
                (f"up_layers.{s}", f"up_{stream}.{s}", R, 0 if stream == "u" else F),
                (down, f"down_{stream}.{s}", R + (s < NUM_STAGES - 1), F * (1 + (stream == "ul"))),
            ):
                for k in range(n):
                    port, mine = f"{port_stage}.{stream}_stream.{k}", f"{ours}.{k}"
                    layers.append(_Layer(f"{port}.conv_input.conv", f"{mine}.conv_in", "conv", (F, 2 * F, *kernel)))
                    layers.append(_Layer(f"{port}.conv_out.conv", f"{mine}.conv_out", "conv", (2 * F, 2 * F, *kernel)))
                    if aux:
                        layers.append(_Layer(f"{port}.nin_skip.lin_a", f"{mine}.link", "linear", (F, 2 * aux)))
        for s in range(NUM_STAGES - 1):
            up = f"upsize_{stream}_stream.{NUM_STAGES - 2 - s}.deconv"
            layers.append(
                _Layer(f"downsize_{stream}_stream.{s}.conv", f"downsample_{stream}.{s}", "conv", (F, F, *kernel))
            )
            layers.append(_Layer(up, f"upsample_{stream}.{s}", "deconv", (F, F, *kernel)))
    return layers


def expected_layout(sizes: PortSizes) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a port state dict of these sizes."""
    layout: dict[str, tuple[int, ...]] = {}
    for layer in _layers(sizes):
        # weight_norm(dim=0) keeps g with the weight's rank: (n, 1, ...) for the n maps of dim 0.
        layout[f"{layer.port}.weight_g"] = (layer.shape[0],) + (1,) * (len(layer.shape) - 1)
        layout[f"{layer.port}.weight_v"] = layer.shape
        layout[f"{layer.port}.bias"] = (layer.shape[1] if layer.kind == "deconv" else layer.shape[0],)
    return layout


def fold_transposed_weight_norm(g: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``ConvTranspose2d``'s weight norm from the port's ``dim=0`` (per input map) to pixelprior's per output map.

    Returns:
        pixelprior's ``(g, v)``: ``v = w = g_port v_port / ||v_port||`` and ``g = ||w||`` per output map.

    Shapes:
        g: ``(in, 1, 1, 1)``, v: ``(in, out, kh, kw)`` -> g ``(1, out, 1, 1)``, v ``(in, out, kh, kw)``
    """
    weight = g * v / torch.linalg.vector_norm(v, dim=(1, 2, 3), keepdim=True)
    return torch.linalg.vector_norm(weight, dim=(0, 2, 3), keepdim=True), weight


def output_permutation(sizes: PortSizes) -> torch.Tensor:
    """``perm`` such that pixelprior's output map ``r`` is the port's map ``perm[r]``.

    The port: ``M`` logits, then per channel ``c`` ``[means | log scales | coefficients]`` (``M`` maps each; no
    coefficients for one channel). pixelprior: logits, means ``(c m)``, log scales ``(c m)``, coefficients ``(p m)``
    with the pairs ``(1, 0), (2, 0), (2, 1)`` in the port's coefficient slots ``0, 1, 2``.
    """
    C, M = sizes.in_channels, sizes.num_mixtures
    stride = M * (_port_outputs(C) - 1) // C  # maps per channel block: 3 M (RGB) or 2 M (one channel)
    perm = list(range(M))
    for offset in (0, M):  # means, then log scales
        perm += [M + c * stride + offset + m for c in range(C) for m in range(M)]
    perm += [M + p * stride + 2 * M + m for p in range(C * (C - 1) // 2) for m in range(M)]
    return torch.tensor(perm)


def convert_state_dict(state: dict[str, torch.Tensor]) -> tuple[PortSizes, dict[str, torch.Tensor]]:
    """A port state dict (``module.`` prefix or not) -> its sizes and :class:`~pixelprior.PixelCNNPlusPlus`'s weights.

    Raises:
        ValueError: listing the missing and unexpected keys, or the wrong shapes, when ``state`` is not the port's.
    """
    state = strip_prefix(state, "module.")
    sizes = infer_sizes(state)
    check_layout(state, expected_layout(sizes), LAYOUT)
    perm = output_permutation(sizes)
    out: dict[str, torch.Tensor] = {}
    for layer in _layers(sizes):
        g, v, bias = (state[f"{layer.port}.{name}"] for name in ("weight_g", "weight_v", "bias"))
        if layer.kind == "deconv":
            g, v = fold_transposed_weight_norm(g, v)
        elif layer.kind == "linear":
            g, v = g[:, :, None, None], v[:, :, None, None]  # Linear (out, in) -> 1x1 conv (out, in, 1, 1)
        if layer.ours == "output":
            g, v, bias = g[perm], v[perm], bias[perm]
        out[f"{layer.ours}.{WN}.original0"] = g
        out[f"{layer.ours}.{WN}.original1"] = v
        out[f"{layer.ours}.bias"] = bias
    return sizes, {key: value.contiguous() for key, value in out.items()}


def convert_pixelcnn_pp(
    path: str | os.PathLike,
    *,
    sample_size: int | tuple[int, int] = 32,
    dropout: float = 0.5,
    dtype: torch.dtype | None = None,
) -> PixelPriorPipeline:
    """A pclucas14/pixel-cnn-pp checkpoint (``.pth`` state dict) as a :class:`~pixelprior.PixelPriorPipeline`.

    Args:
        path: the ``torch.save``'d state dict, read with ``weights_only=True`` (or a ``.safetensors`` copy).
        sample_size: the grid (the network is convolutional: 32 for the port's CIFAR-10 models, 28 for MNIST);
            divisible by 4.
        dropout: the converted model's dropout (the port's is 0.5), for fine-tuning.
        dtype: the converted model's dtype; default the checkpoint's (float32 for the port's).

    Returns:
        The pipeline, in eval mode.

    Example:
        >>> from pixelprior.converters import convert_pixelcnn_pp
        >>> pipe = convert_pixelcnn_pp("pcnn_lr.0.00040_nr-resnet5_nr-filters160_889.pth")  # doctest: +SKIP
    """
    sizes, weights = convert_state_dict(read_state_dict(path))
    prior = PixelCNNPlusPlus(
        sample_size=sample_size,
        in_channels=sizes.in_channels,
        num_values=256,
        hidden_channels=sizes.hidden_channels,
        num_layers=sizes.num_layers,
        num_mixtures=sizes.num_mixtures,
        dropout=dropout,
    )
    prior = as_dtype(prior, dtype or weights["output.bias"].dtype)
    prior.load_state_dict(weights, strict=True)
    return PixelPriorPipeline(prior.eval())
