"""The gated residual block of PixelCNN++ [1], shared by PixelCNN++ and PixelSNAIL [2], with its cached steps.

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with Discretized
    Logistic Mixture Likelihood and Other Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517
    Reference code: https://github.com/openai/pixel-cnn (``pixel_cnn_pp/nn.py``, ``gated_resnet``).
[2] X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. PixelSNAIL: An Improved Autoregressive Generative Model.
    ICML 2018. https://arxiv.org/abs/1712.09763

The block (:class:`GatedResidualBlock`), ``f`` a nonlinearity (``concat_elu(x) = elu([x, -x])``, which doubles
the maps, or ``elu``)::

    c = conv_in(f(x)) [+ link(f(aux))]
    [a | b] = conv_out(dropout(f(c))) [+ bias(class_labels, cond)]
    x + a * sigmoid(b)

``conv_in`` and ``conv_out`` are the same kind of convolution (down-shifted, down-right-shifted, ``1 x 1`` or plain,
built by ``make_conv(in, out)``), ``link`` a ``1 x 1`` convolution of an auxiliary input (the other stream, a skip
connection, the attention output), ``bias`` the conditioning (:class:`~pixelprior.nn.ConditionBias`). Each layer is
causal when its convolutions are, since everything else is per position.

Cached sampling (:meth:`GatedResidualBlock.stepper`, a :class:`GatedResidualStep`): the block at one position from
its input there, reading earlier positions from the input maps of its two convolutions (``f(x)`` and ``f(c)``,
written at each evaluated position); a whole row of it for streams that only read complete rows; or, with ``1 x 1``
convolutions, a position alone.

Einops letters: ``b`` batch, ``c`` channels, ``h w`` rows and columns, ``(two c)`` the gate maps ``[a | b]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .activations import concat_elu
from .conditioning import ConditionBias, bias_at, bias_row
from .conv import AnchoredConv2d, ConvStep
from .stepping import Index, PaddedMap
from .weight_norm import weight_norm

NONLINEARITIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"concat_elu": concat_elu, "elu": F.elu}

ConvFactory = Callable[[int, int], AnchoredConv2d]


def weight_normalized(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Weight-normalize ``module`` per output map (dim 1 of a transposed convolution's weight, 0 otherwise).

    :func:`pixelprior.nn.weight_norm.weight_norm`: torch's parametrization layout, the weight read in one call."""
    if not enabled:
        return module
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    return weight_norm(module, dim=dim)


def gated_residual(x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """The gated residual ``x + a * sigmoid(b)`` of the pre-activations ``[a | b]``.

    Shapes:
        x: ``(b, c, ...)``, pre: ``(b, (two c), ...)`` -> ``(b, c, ...)``
    """
    a, b = pre.chunk(2, dim=1)  # (b, c, ...) each
    return x + a * torch.sigmoid(b)


class GatedResidualBlock(nn.Module):
    """Gated residual block of PixelCNN++: ``x + a * sigmoid(b)`` (see the module docstring).

    Args:
        channels: ``c``, the maps of the stream.
        make_conv: builds the two convolutions, ``make_conv(in, out)``: a shifted convolution class, a ``1 x 1`` or
            a plain convolution.
        hidden_channels: maps of ``conv_in``'s output (default ``channels``).
        aux_channels: maps of the auxiliary input ``aux`` (0: none).
        nonlinearity: ``"concat_elu"`` or ``"elu"``.
        dropout: dropout probability before ``conv_out``.
        weight_norm: weight-normalize the three convolutions.
        out_scale: factor of ``conv_out``'s initial weight (0.1 in [1]: the block starts near the identity).
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.

    Shapes:
        x: ``(b, c, h, w)``, aux: ``(b, aux_channels, h, w)``, class_labels: ``(b,)``,
        cond: ``(b, cond_channels, h, w)`` -> ``(b, c, h, w)`` (the residual included)
    """

    def __init__(
        self,
        channels: int,
        make_conv: ConvFactory,
        hidden_channels: int | None = None,
        aux_channels: int = 0,
        nonlinearity: str = "concat_elu",
        dropout: float = 0.0,
        weight_norm: bool = False,
        out_scale: float = 1.0,
        num_classes: int | None = None,
        cond_channels: int | None = None,
    ) -> None:
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"Expected nonlinearity to be one of {tuple(NONLINEARITIES)}, got {nonlinearity!r}.")
        self.act = NONLINEARITIES[nonlinearity]
        m = 2 if nonlinearity == "concat_elu" else 1  # concat_elu doubles the maps
        hidden = channels if hidden_channels is None else hidden_channels
        self.conv_in = weight_normalized(make_conv(m * channels, hidden), weight_norm)
        self.link = (
            weight_normalized(AnchoredConv2d(m * aux_channels, hidden, 1), weight_norm) if aux_channels else None
        )
        self.dropout = nn.Dropout(dropout)
        conv_out = make_conv(m * hidden, 2 * channels)
        if out_scale != 1.0:
            with torch.no_grad():
                conv_out.weight.mul_(out_scale)
        self.conv_out = weight_normalized(conv_out, weight_norm)
        self.cond_bias = ConditionBias(2 * channels, num_classes, cond_channels)

    def forward(
        self,
        x: torch.Tensor,
        aux: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.conv_in(self.act(x))  # (b, hidden, h, w)
        if self.link is not None:
            c = c + self.link(self.act(aux))
        pre = self.conv_out(self.dropout(self.act(c)))  # (b, (two c), h, w)
        bias = self.cond_bias(class_labels, cond)
        if bias is not None:
            pre = pre + bias
        return gated_residual(x, pre)

    def stepper(
        self, batch_size: int, size: tuple[int, int], class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> GatedResidualStep:
        """State for cached sampling (one per sampling run) on a grid of ``size`` (the block's stage).

        ``cond`` is the condition at that size; the conditioning bias is computed once, here.
        """
        conv_in, conv_out = self.conv_in.stepper(), self.conv_out.stepper()
        inputs = hidden = None
        if conv_in.kernel_size != (1, 1) or conv_out.kernel_size != (1, 1):
            like = conv_out.weight
            # Margins for both pixel and row steps (a stream's block takes one or the other).
            inputs = PaddedMap.zeros(batch_size, conv_in.weight.shape[1], size, conv_in.margin(whole_rows=True), like)
            hidden = PaddedMap.zeros(
                batch_size, conv_out.weight.shape[1], size, conv_out.margin(whole_rows=True), like
            )
        return GatedResidualStep(
            act=self.act,
            conv_in=conv_in,
            link=None if self.link is None else self.link.stepper(),
            conv_out=conv_out,
            bias=self.cond_bias(class_labels, cond),
            inputs=inputs,
            hidden=hidden,
        )


@dataclass
class GatedResidualStep:
    """A :class:`GatedResidualBlock` frozen for cached sampling (eval mode: no dropout).

    Attributes:
        act: the nonlinearity ``f``.
        conv_in, link, conv_out: the convolutions' frozen weights.
        bias: the conditioning bias of the whole grid, ``(b, (two c), h, w)``, ``(b, (two c), 1, 1)`` or ``None``.
        inputs: ``f(x)`` at every evaluated position, read by ``conv_in`` (``None`` for a ``1 x 1`` block).
        hidden: ``f(c)`` at every evaluated position, read by ``conv_out`` (``None`` for a ``1 x 1`` block).
    """

    act: Callable[[torch.Tensor], torch.Tensor]
    conv_in: ConvStep
    link: ConvStep | None
    conv_out: ConvStep
    bias: torch.Tensor | None
    inputs: PaddedMap | None
    hidden: PaddedMap | None

    def point(self, x: torch.Tensor, i: Index, j: Index, aux: torch.Tensor | None = None) -> torch.Tensor:
        """A ``1 x 1`` block at ``(i, j)``.

        Shapes:
            x: ``(b, c)``, aux: ``(b, aux_channels)`` -> ``(b, c)``
        """
        c = self.conv_in.point(self.act(x))
        if self.link is not None:
            c = c + self.link.point(self.act(aux))
        return gated_residual(x, self.conv_out.point(self.act(c)) + bias_at(self.bias, i, j))

    def pixel(self, x: torch.Tensor, i: Index, j: Index, aux: torch.Tensor | None = None) -> torch.Tensor:
        """The block at ``(i, j)`` from its input there; earlier positions are read from the input maps.

        Shapes:
            x: ``(b, c)``, aux: ``(b, aux_channels)`` -> ``(b, c)``
        """
        self.inputs.write(self.act(x), i, j)
        c = self.conv_in(self.inputs, i, j)  # (b, hidden)
        if self.link is not None:
            c = c + self.link.point(self.act(aux))
        self.hidden.write(self.act(c), i, j)
        return gated_residual(x, self.conv_out(self.hidden, i, j) + bias_at(self.bias, i, j))

    def row(self, x: torch.Tensor, i: Index, aux: torch.Tensor | None = None) -> torch.Tensor:
        """The block on row ``i`` from its input row; earlier rows are read from the input maps.

        Shapes:
            x: ``(b, c, w)``, aux: ``(b, aux_channels, w)`` -> ``(b, c, w)``
        """
        self.inputs.write_row(self.act(x), i)
        c = self.conv_in.row(self.inputs, i)  # (b, hidden, w)
        if self.link is not None:
            c = c + self.link.point(self.act(aux).transpose(1, 2)).transpose(1, 2)  # a 1 x 1 step, channels last
        self.hidden.write_row(self.act(c), i)
        return gated_residual(x, self.conv_out.row(self.hidden, i) + bias_row(self.bias, i))
