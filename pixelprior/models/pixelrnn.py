"""PixelRNN [1]: a stack of two-dimensional LSTM layers (Row LSTM or Diagonal BiLSTM) with residual connections.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    https://arxiv.org/abs/1601.06759

Architecture (sections 3.1-3.4, figure 5 and table 4 of [1]), ``2h = hidden_channels`` (the width of the residual
stream, as in :class:`~pixelprior.models.pixelcnn.PixelCNN`), ``h`` LSTM units per layer:

* a ``7 x 7`` convolution with mask A (``first_kernel_size``) from the ``C`` data channels to ``2h`` maps;
* ``num_layers`` recurrent layers, each ``s = s + 1x1(LSTM(s))``: the LSTM reads the ``2h`` maps of the stream and
  returns ``h`` hidden maps, which a ``1 x 1`` mask-B convolution brings back to ``2h`` and adds to the stream
  (the residual connections of section 3.4);
* two output layers ``ReLU -> 1x1 -> ReLU -> 1x1`` (mask B) to ``C x num_values`` logits: a softmax over the values
  of each channel.

The LSTM layers (:mod:`pixelprior.nn.recurrent`):

* ``cell="row_lstm"`` (section 3.1): the states of row ``i`` at once, from a ``1 x k`` mask-B input-to-state
  convolution along row ``i`` (the paper's "k x 1") and a ``1 x k`` state-to-state convolution over the states of
  row ``i - 1`` (``k = kernel_size = 3``);
* ``cell="diagonal_bilstm"`` (section 3.2): the map skewed so that diagonals are columns, a ``1 x 1`` mask-B
  input-to-state and a ``2 x 1`` state-to-state convolution per diagonal, in both directions; the right-to-left
  output is shifted down one row and added to the left-to-right one. The right-to-left scan also reads the data
  (see the NOTE below).

**Channel groups** (``C > 1``, R -> G -> B within a pixel; section 3.4): every map belongs to one of ``C`` groups,
the stream as ``channel_groups(2h, C)``, the LSTM units as ``channel_groups(h, C)``, and each of the four gates'
``h`` maps like the units. All convolutions that read the current pixel carry mask B (the first one mask A); the
state-to-state convolutions read only earlier positions and carry no mask (table 4 of [1]).

**Receptive fields.** The Diagonal BiLSTM sees every earlier pixel in every layer: its left-to-right scan covers
the pixels above-left and the row up to the pixel, the shifted right-to-left scan the rows above (with the data).
The **Row LSTM has a blind spot** (figure 4 of [1]: a triangular receptive field). Its states reach one row up
per step and ``k // 2`` columns sideways, so with ``a = kernel_size // 2``, ``r = first_kernel_size // 2`` and
``L = num_layers``, the parameters at ``(i, j)`` depend on the pixel ``(i - d, j')`` exactly when

* ``d = 0``: ``j - L a - r <= j' < j`` (and the earlier channels of ``(i, j)`` itself);
* ``d >= 1``: ``j - (L + d) a - r <= j' <= j + max((d - 1) a + r, d a - 1)``.

Row ``i - 1`` is read ``r`` columns past the pixel (through the first layer), row ``i - d`` (for ``a <= r + 1``)
``(d - 1) a + r`` columns past it: the triangle widens by ``a`` columns per row up, from ``r``. With the defaults
the pixels ``(i - d, j + c)``, ``c > d + 2``, are never seen, however deep the network. (The left limits are those
of any convolution stack; within a 28 x 28 image they are rarely reached.) The likelihood is still exact: those
pixels are ignored.

**Conditioning.** A class label (``num_classes``) adds a learned embedding and a spatial map (``cond_channels``,
resized to the grid) a ``1 x 1`` convolution of it to the input-to-state gates of every layer
(:class:`~pixelprior.nn.ConditionBias`, ``4h`` maps; ``8h`` for the two directions of the Diagonal BiLSTM), as the
biasing of the conditional networks of the multi-scale PixelRNN (section 3.5;
:class:`~pixelprior.models.multiscale.MultiScalePrior`).

``num_layers`` is the number of LSTM layers (12 in [1]'s CIFAR-10 models, 7 in its MNIST model); the first
convolution and the output layers come on top.

Shape letters: ``b`` batch, ``c`` data channels, ``H W`` grid rows and columns, ``h`` LSTM units.

NOTE: unlike [1], which stores the full ``k x 1`` input-to-state kernel of the Row LSTM, only its causal taps are
stored (the ``k // 2`` pixels left of the current one and the current one): same function, fewer parameters. The
state-to-state convolutions have no bias (the input-to-state ones have one per gate).
NOTE: unlike [1], whose MNIST model ends in a sigmoid, binary data use the categorical likelihood with
``num_values=2``: a softmax over two values is a sigmoid of the logit difference, same model.
NOTE: unlike [1], the Diagonal BiLSTM's right-to-left scan also reads the encoded data at each position (a ``1 x 1``
convolution of the ``C`` data maps added to its gates; no mask, since the scan's output is read a row below). The
stream at a pixel never holds that pixel (the first layer has mask A), so the scan of row ``i - 1`` as described in
[1] never reads the row's last pixel ``(i - 1, W - 1)``, which then enters the network only at row ``i``, through
the first layer, from column ``W - 1 - first_kernel_size // 2`` on: ``(i, j)`` left of that would not see it at any
depth: a one-pixel blind spot, which tests/models/test_pixelrnn.py shows without the data input.
NOTE: unlike [1], where the multi-scale conditioning map is built by a deconvolutional network, the base class
resizes ``cond`` to the grid (nearest) before the ``1 x 1`` convolution.
NOTE: [1] does not say how the LSTM states start or whether its Diagonal BiLSTM's directions share weights; here the
states above the first row (and outside the image) are zero, and each direction has its own weights.

Cached sampling: every layer keeps its input map (filled pixel by pixel) and its LSTM states. A Row LSTM computes
the state-to-state gates of row ``i + 1`` from row ``i`` once, when row ``i`` is final, and per pixel only the
input-to-state gates and the update. A Diagonal BiLSTM runs its left-to-right scan per pixel, from the stored states
above and left of it, and its right-to-left scan of row ``i`` once when row ``i`` is final (row ``i + 1`` only reads
it shifted down), from a copy of the canvas that the first layer reads too. The ``1 x 1`` layers are per pixel;
conditioning biases are computed once per run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..nn import (
    ConditionBias,
    ConvStep,
    DiagonalBiLSTM,
    DiagonalBiLSTMStep,
    MaskedConv2d,
    RowLSTM,
    RowLSTMStep,
    channel_groups,
)
from ..nn.stepping import Index, PaddedMap, StepCache
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class

CELLS = ("row_lstm", "diagonal_bilstm")


class PixelRNNLayer(nn.Module):
    """One residual LSTM layer of [1] (figure 5): ``s + 1x1(LSTM(s))``.

    Args:
        cell: ``"row_lstm"`` or ``"diagonal_bilstm"``.
        channels: ``2h``, the width of the stream.
        kernel_size: the Row LSTM's ``k``.
        num_groups: ``C``, the number of channel groups.
        data_channels: maps of the encoded data, which the Diagonal BiLSTM's right-to-left scan reads.
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.

    Shapes:
        s: ``(b, 2h, H, W)``, data: ``(b, data_channels, H, W)``, class_labels: ``(b,)``,
        cond: ``(b, cond_channels, H, W)`` -> ``(b, 2h, H, W)``
    """

    def __init__(
        self,
        cell: str,
        channels: int,
        kernel_size: int,
        num_groups: int,
        data_channels: int,
        num_classes: int | None = None,
        cond_channels: int | None = None,
    ) -> None:
        super().__init__()
        units = channels // 2
        stream, state = channel_groups(channels, num_groups), channel_groups(units, num_groups)
        if cell == "row_lstm":
            self.lstm = RowLSTM(channels, units, kernel_size, in_groups=stream, num_groups=num_groups)
        else:
            self.lstm = DiagonalBiLSTM(
                channels, units, in_groups=stream, num_groups=num_groups, context_channels=data_channels
            )
        self.reads_data = cell == "diagonal_bilstm"
        self.cond_bias = ConditionBias(self.lstm.gate_channels, num_classes, cond_channels)
        self.output = MaskedConv2d(units, channels, 1, "B", in_groups=state, out_groups=stream)

    def forward(
        self,
        s: torch.Tensor,
        data: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        bias = self.cond_bias(class_labels, cond)
        hidden = self.lstm(s, bias, data) if self.reads_data else self.lstm(s, bias)  # (b, h, H, W)
        return s + self.output(hidden)


@dataclass(kw_only=True)
class PixelRNNCache(StepCache):
    """Cached-sampling state of a :class:`PixelRNN`."""

    canvas: PaddedMap  # (B, C, H, W): the encoded values, read by the input layer and the right-to-left scans
    input_conv: ConvStep
    lstms: list[RowLSTMStep | DiagonalBiLSTMStep]  # each keeps its input map and its states
    outputs: list[ConvStep]  # the 1x1 convolution of each layer
    head: ConvStep
    output: ConvStep


@register_prior_class
class PixelRNN(AutoregressivePrior):
    """PixelRNN of van den Oord et al. 2016: residual Row LSTM or Diagonal BiLSTM layers over the image.

    Args:
        sample_size: ``int`` or ``(H, W)``.
        in_channels: data channels ``C``.
        num_values: values per channel.
        hidden_channels: ``2h``, the width of the residual stream (even; the LSTMs have ``h >= C`` units).
        num_layers: number of LSTM layers (>= 1).
        cell: ``"row_lstm"`` or ``"diagonal_bilstm"``.
        kernel_size: odd ``k`` of the Row LSTM's ``1 x k`` convolutions (3 in [1]); the Diagonal BiLSTM's kernels are
            fixed (``1 x 1`` and ``2 x 1``) and ignore it.
        first_kernel_size: odd kernel of the mask-A input convolution (7 in [1]).
        head_channels: width of the two output layers (default ``hidden_channels``).
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.
        likelihood: ``"categorical"`` (per-channel softmax, channels R -> G -> B; [1]) or ``"logistic_mixture"``.
        num_mixtures: mixture components of the logistic mixture.

    Shapes:
        x: ``(B, C, H, W)`` long -> params ``(B, distribution.num_params, H, W)``

    Example:
        >>> from pixelprior import create_prior
        >>> model = create_prior("pixelrnn_diagonal_bilstm_mnist", hidden_channels=16, num_layers=2)
        >>> model.sample(2).shape
        torch.Size([2, 1, 28, 28])
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = 28,
        in_channels: int = 1,
        num_values: int = 256,
        hidden_channels: int = 32,
        num_layers: int = 7,
        cell: str = "diagonal_bilstm",
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        head_channels: int | None = None,
        num_classes: int | None = None,
        cond_channels: int | None = None,
        likelihood: str = "categorical",
        num_mixtures: int = 10,
    ) -> None:
        super().__init__()
        self._init_prior(sample_size, in_channels, num_values, num_classes, cond_channels, likelihood, num_mixtures)
        C = in_channels
        if cell not in CELLS:
            raise ValueError(f"Expected cell to be one of {CELLS}, got {cell!r}.")
        if not isinstance(hidden_channels, int) or hidden_channels % 2 or hidden_channels < 2 * C:
            raise ValueError(
                f"Expected hidden_channels to be an even int >= 2 * in_channels = {2 * C} (the LSTMs have "
                f"hidden_channels // 2 units, at least one per channel group), got {hidden_channels!r}."
            )
        head_channels = head_channels or hidden_channels
        if not isinstance(head_channels, int) or head_channels < C:
            raise ValueError(f"Expected head_channels to be an int >= in_channels = {C}, got {head_channels!r}.")
        for name, k in (("kernel_size", kernel_size), ("first_kernel_size", first_kernel_size)):
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"Expected {name} to be an odd positive int, got {k!r}.")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"Expected num_layers to be an int >= 1, got {num_layers!r}.")
        stream, head = channel_groups(hidden_channels, C), channel_groups(head_channels, C)

        self.input_conv = MaskedConv2d(
            C, hidden_channels, first_kernel_size, "A", in_groups=torch.arange(C), out_groups=stream
        )
        self.layers = nn.ModuleList(
            PixelRNNLayer(cell, hidden_channels, kernel_size, C, C, num_classes, cond_channels)
            for _ in range(num_layers)
        )
        self.head = MaskedConv2d(hidden_channels, head_channels, 1, "B", in_groups=stream, out_groups=head)
        out = self.distribution.param_groups()
        self.output = MaskedConv2d(head_channels, self.distribution.num_params, 1, "B", in_groups=head, out_groups=out)

    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        s = self.input_conv(h)  # (B, 2h, H, W)
        for layer in self.layers:
            s = layer(s, h, class_labels, cond)  # (B, 2h, H, W)
        return self.output(F.relu(self.head(F.relu(s))))  # (B, P, H, W)

    # ------------------------------------------------------------------------------ cached sampling
    def init_cache(
        self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> PixelRNNCache:
        input_conv = self.input_conv.stepper()
        canvas = PaddedMap.zeros(batch_size, self.in_channels, self.grid_size, input_conv.margin(), input_conv.weight)
        return PixelRNNCache(
            canvas=canvas,
            input_conv=input_conv,
            lstms=[
                layer.lstm.stepper(batch_size, self.grid_size, layer.cond_bias(class_labels, cond))
                for layer in self.layers
            ],
            outputs=[layer.output.stepper() for layer in self.layers],
            head=self.head.stepper(),
            output=self.output.stepper(),
        )

    def forward_step(
        self, cache: PixelRNNCache, pixel: torch.Tensor, i: Index, j: Index, step: int, variant: None
    ) -> torch.Tensor:
        cache.canvas.write(pixel, i, j)  # the channels drawn so far; mask A hides the others
        s = cache.input_conv(cache.canvas, i, j)  # (B, 2h)
        for lstm, output in zip(cache.lstms, cache.outputs, strict=True):
            s = s + output.point(lstm(s, i, j))  # (B, 2h)
        return cache.output.point(F.relu(cache.head.point(F.relu(s))))  # (B, P)

    def commit(self, cache: PixelRNNCache, pixel: torch.Tensor, i: Index, j: Index) -> None:
        cache.canvas.write(pixel, i, j)

    def commit_row(self, cache: PixelRNNCache, i: Index, variant: None) -> None:
        for layer, lstm in zip(self.layers, cache.lstms, strict=True):
            lstm.commit_row(i, cache.canvas if layer.reads_data else None)  # the data, final up to row i


_MNIST = (
    "on binarized MNIST (1x28x28, 2 values): 7 layers of h=16 LSTM units (a 2h=32 stream), the size of [1]'s MNIST "
    "model (section 5, a Diagonal BiLSTM), 7x7 mask-A input and two 1x1 output layers"
)
_CIFAR = (
    "on CIFAR-10 (3x32x32, 256 values, R->G->B softmaxes): 12 layers of h=128 LSTM units (a 2h=256 stream), 7x7 "
    "mask-A input, 1024-wide output layers ([1], section 5 and table 4)"
)
register_prior(
    "pixelrnn_row_lstm_mnist",
    PixelRNN,
    f"PixelRNN Row LSTM {_MNIST}; 1x3 input-to-state and state-to-state kernels (triangular receptive field).",
    sample_size=28,
    in_channels=1,
    num_values=2,
    hidden_channels=32,
    num_layers=7,
    cell="row_lstm",
)
register_prior(
    "pixelrnn_diagonal_bilstm_mnist",
    PixelRNN,
    f"PixelRNN Diagonal BiLSTM {_MNIST}.",
    sample_size=28,
    in_channels=1,
    num_values=2,
    hidden_channels=32,
    num_layers=7,
    cell="diagonal_bilstm",
)
register_prior(
    "pixelrnn_row_lstm_cifar10",
    PixelRNN,
    f"PixelRNN Row LSTM {_CIFAR}; 1x3 input-to-state and state-to-state kernels (triangular receptive field).",
    sample_size=32,
    in_channels=3,
    num_values=256,
    hidden_channels=256,
    num_layers=12,
    cell="row_lstm",
    head_channels=1024,
)
register_prior(
    "pixelrnn_diagonal_bilstm_cifar10",
    PixelRNN,
    f"PixelRNN Diagonal BiLSTM {_CIFAR}.",
    sample_size=32,
    in_channels=3,
    num_values=256,
    hidden_channels=256,
    num_layers=12,
    cell="diagonal_bilstm",
    head_channels=1024,
)
