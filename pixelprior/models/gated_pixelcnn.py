"""Gated PixelCNN [1]: a vertical and a horizontal stack of gated convolutions, without a blind spot.

[1] A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu. Conditional Image
    Generation with PixelCNN Decoders. NeurIPS 2016. https://arxiv.org/abs/1606.05328

Architecture (section 2 and figure 2 of [1]), ``p = hidden_channels``, ``k`` the kernel size of a layer
(``first_kernel_size`` for the first one, ``kernel_size`` after). Each of the ``num_layers`` gated layers is

* **vertical stack**: a ``(k//2 + 1) x k`` :class:`~pixelprior.nn.DownShiftedConv2d` to ``2p`` maps,
  reading the rows ``i - k//2 .. i`` of the previous vertical features, then the gate
  ``tanh(a) * sigmoid(b)`` (the ``2p`` maps are ``[a | b]``) to ``p`` maps. No residual;
* **vertical -> horizontal link**: a ``1 x 1`` convolution (``2p -> 2p``) of the vertical stack's ``2p``
  pre-gate maps, **shifted down one row** before it is added to the horizontal pre-activations: the
  horizontal stack at row ``i`` only sees vertical features of rows ``< i``;
* **horizontal stack**: a ``1 x (k//2 + 1)`` masked convolution to ``2p`` maps whose anchor is its last tap
  (the pixels left of the current one, and the current one), mask A in the first layer and B after, plus
  the link, the gate, and a ``1 x 1`` convolution added to the stream (residual).

Two output layers ``ReLU -> 1x1 -> ReLU -> 1x1`` map the horizontal stream to the likelihood's parameters
(``C x num_values`` logits for the categorical likelihood). The last layer's vertical gate is not computed:
nothing reads it (only that layer's link is used).

**No blind spot.** The vertical features of row ``r`` depend on data rows ``<= r`` only, in a rectangle that
widens by ``k//2`` columns on either side per layer; they reach the horizontal stack only through the single
down shift of the link, so the pixel ``(i, j)`` sees the whole rectangle of rows above it (within the
receptive field) plus the pixels left of it in its row. Shifting the vertical stack at every layer instead
would move each deeper layer's view one more row up, leaving the nearest rows above to the narrow first
layers: a blind spot again.

**Channel groups** (``C > 1``, R -> G -> B within a pixel): the horizontal stack and the output layers carry
the channel-group masks of :mod:`pixelprior.nn.masks`: the ``2p`` maps of a gated convolution are
``[tanh half | sigmoid half]``, each half grouped as ``channel_groups(p, C)``, so gate unit ``n`` combines
two maps of the same group. The vertical stack, the link and the conditioning need no mask: the link only
passes rows above, where every channel is known, and the conditioning is fully observed.

**Conditioning** (section 2.3 of [1]): ``y = tanh(W_f * x + V_f^T h) * sigmoid(W_g * x + V_g^T h)`` in both
stacks of every layer. A class label (``num_classes``) adds a learned embedding (``V^T h`` with ``h`` one-hot)
and a spatial map (``cond_channels``, already resized to the grid) a ``1 x 1`` convolution of it (``V * s``),
both to the ``2p`` pre-activations, through one :class:`~pixelprior.nn.ConditionBias` of ``4p`` maps per
layer (``[vertical 2p | horizontal 2p]``).

Einops letters: ``b`` batch, ``c`` data channels, ``p`` hidden maps, ``(two p)`` the ``2p`` gate maps
``[tanh | sigmoid]``, ``h w`` grid rows and columns.

NOTE: unlike [1], which describes ``n x n`` vertical and ``1 x n`` horizontal masked kernels, only their
causal parts are stored: ``(k//2 + 1) x k`` vertical (rows ``i - k//2 .. i``; it may read the current row
because its output enters the horizontal stack shifted down one row) and ``1 x (k//2 + 1)`` horizontal. The
other taps would always be zero: same function, fewer parameters.
NOTE: [1] gives no CIFAR-10 architecture; its ImageNet model has 20 layers of 384 maps with ``5 x 5``
filters (registered as ``gated_pixelcnn_cifar10``). The defaults ``first_kernel_size=7`` and
``kernel_size=3`` follow the PixelCNN of [2] (``7 x 7`` mask-A input layer, ``3 x 3`` after) and common
open-source Gated PixelCNNs.
NOTE: [1] does not describe the first layer's residual or the output layers: the first layer has no residual
(its input has ``C`` channels, not ``p``), and the output layers are the two ``ReLU -> 1x1`` layers of [2].
NOTE: unlike [1], where a spatial condition is mapped to the grid by a learned deconvolutional network, the
base class resizes ``cond`` to the grid (nearest) before the ``1 x 1`` convolution.

Cached sampling: the vertical stack depends on complete rows only, so when row ``i`` is final (``commit_row``) the
vertical stack's row ``i`` is computed for every layer at once (``ConvStep.row`` on per-layer input maps) and the links
of row ``i + 1`` are stored. The horizontal stack runs per pixel: every layer keeps its input map, a step writes the
new pixel's input and reads back the ``1 x (k//2 + 1)`` window ending at the pixel. The first layer reads a copy of
the canvas. Conditioning biases are computed once per sampling run.

[2] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    https://arxiv.org/abs/1601.06759
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from ..nn import (
    AnchoredConv2d,
    ConditionBias,
    ConvStep,
    DownShiftedConv2d,
    MaskedConv2d,
    bias_at,
    bias_row,
    channel_groups,
    down_shift,
)
from ..nn.stepping import Index, PaddedMap, StepCache, pick
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class


def gate(x: torch.Tensor) -> torch.Tensor:
    """The gated unit ``tanh(a) * sigmoid(b)`` of [1] (equation 2) on maps ``[a | b]``.

    Shapes:
        x: ``(b, (two p), ...)`` -> ``(b, p, ...)``
    """
    a, b = x.chunk(2, dim=1)  # (b, p, ...) each
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer of [1] (figure 2): vertical stack, down-shifted link, horizontal stack.

    Args:
        in_channels: input maps of both stacks (``C`` data channels in the first layer, ``p`` after).
        hidden_channels: ``p``.
        kernel_size: odd ``k``: vertical ``(k//2 + 1) x k``, horizontal ``1 x (k//2 + 1)``.
        mask_type: ``"A"`` (first layer: the current pixel's own channel hidden) or ``"B"``.
        in_groups: ``(in_channels,)`` channel groups of the horizontal input.
        num_groups: ``C``, the number of channel groups.
        residual: add the horizontal input to its output (all layers but the first).
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.

    Shapes:
        v: ``(b, in_channels, h, w)``, s: ``(b, in_channels, h, w)``, class_labels: ``(b,)``,
        cond: ``(b, cond_channels, h, w)`` -> v: ``(b, p, h, w)`` (``None`` when ``vertical=False``: the last
        layer's vertical output feeds nothing), s: ``(b, p, h, w)``
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int,
        mask_type: str,
        in_groups: torch.Tensor,
        num_groups: int,
        residual: bool,
        num_classes: int | None = None,
        cond_channels: int | None = None,
    ) -> None:
        super().__init__()
        p, half = hidden_channels, kernel_size // 2
        stream = channel_groups(p, num_groups)
        gates = torch.cat([stream, stream])  # [tanh half | sigmoid half], each grouped like the stream
        self.residual = residual
        self.v_conv = DownShiftedConv2d(in_channels, 2 * p, (half + 1, kernel_size))
        self.link = AnchoredConv2d(2 * p, 2 * p, 1)  # rows above only: no mask
        self.h_conv = MaskedConv2d(
            in_channels, 2 * p, (1, half + 1), mask_type, anchor=(0, half), in_groups=in_groups, out_groups=gates
        )
        self.h_out = MaskedConv2d(p, p, 1, "B", in_groups=stream, out_groups=stream)
        # [vertical 2p | horizontal 2p] conditioning biases.
        self.cond_bias = ConditionBias(4 * p, num_classes, cond_channels)

    def forward(
        self,
        v: torch.Tensor,
        s: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        vertical: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        bias = self.cond_bias(class_labels, cond)  # (b, 4p, h, w), (b, 4p, 1, 1) or None
        v_bias, h_bias = bias.chunk(2, dim=1) if bias is not None else (0.0, 0.0)
        v_pre = self.v_conv(v)  # (b, 2p, h, w), reads rows <= i
        v_out = gate(v_pre + v_bias) if vertical else None
        # The one down shift: the horizontal stack at row i reads vertical features of rows < i.
        h_pre = self.h_conv(s) + self.link(down_shift(v_pre)) + h_bias  # (b, 2p, h, w)
        out = self.h_out(gate(h_pre))  # (b, p, h, w)
        return v_out, (s + out if self.residual else out)

    def stepper(
        self, batch_size: int, size: tuple[int, int], class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> GatedLayerStep:
        """State for cached sampling (one per sampling run); the first layer reads the canvas, not input maps."""
        v_conv, h_conv = self.v_conv.stepper(), self.h_conv.stepper()
        bias = self.cond_bias(class_labels, cond)  # (B, 4p, H, W), (B, 4p, 1, 1) or None
        v_bias, h_bias = bias.chunk(2, dim=1) if bias is not None else (None, None)
        like, p = v_conv.weight, self.h_out.out_channels
        maps = self.residual  # every layer but the first reads its own input maps

        def input_map(conv: ConvStep, whole_rows: bool) -> PaddedMap | None:
            return PaddedMap.zeros(batch_size, p, size, conv.margin(whole_rows=whole_rows), like) if maps else None

        link = self.link.stepper()
        return GatedLayerStep(
            v_conv=v_conv,
            link=link,
            h_conv=h_conv,
            h_out=self.h_out.stepper(),
            v_bias=v_bias,
            h_bias=h_bias,
            v_input=input_map(v_conv, True),
            h_input=input_map(h_conv, False),
            # Row 0's link: the down shift's zero row through the 1x1 link.
            link_row=link.point(like.new_zeros(batch_size, size[1], 2 * p)),
        )


@dataclass
class GatedLayerStep:
    """A :class:`GatedLayer` frozen for cached sampling: weights, conditioning, input maps, the current row's link."""

    v_conv: ConvStep
    link: ConvStep
    h_conv: ConvStep
    h_out: ConvStep
    v_bias: torch.Tensor | None  # (B, 2p, H, W), (B, 2p, 1, 1) or None
    h_bias: torch.Tensor | None
    v_input: PaddedMap | None  # (B, p, H, W): the vertical stack's input, row by row (None in the first layer)
    h_input: PaddedMap | None  # (B, p, H, W): the horizontal stack's input, pixel by pixel (None in the first layer)
    link_row: torch.Tensor  # (B, W, 2p): the link into the horizontal stack of the current row

    def vertical(self, source: PaddedMap, r: Index) -> torch.Tensor:
        """The vertical pre-gate maps of row ``r`` (rows ``r - k//2 .. r`` of ``source`` are final); stores the link
        of row ``r + 1``.

        Shapes:
            -> ``(B, 2p, W)``
        """
        pre = self.v_conv.row(source, r)
        self.link_row.copy_(self.link.point(rearrange(pre, "b c w -> b w c")))  # in place: static shapes and strides
        return pre

    def horizontal(self, source: PaddedMap, i: Index, j: Index) -> torch.Tensor:
        """The horizontal stack's output at ``(i, j)``, its input written there in ``source``.

        Shapes:
            -> ``(B, p)`` (the residual branch)
        """
        pre = self.h_conv(source, i, j) + pick(self.link_row, 1, j) + bias_at(self.h_bias, i, j)
        return self.h_out.point(gate(pre))


@dataclass(kw_only=True)
class GatedPixelCNNCache(StepCache):
    """Cached-sampling state of a :class:`GatedPixelCNN`."""

    canvas: PaddedMap  # (B, C, H, W): the encoded values, read by the first layer's two stacks
    layers: list[GatedLayerStep]
    head: ConvStep
    output: ConvStep


@register_prior_class
class GatedPixelCNN(AutoregressivePrior):
    """Gated PixelCNN of van den Oord et al. 2016: gated vertical and horizontal stacks, no blind spot.

    Args:
        sample_size: ``int`` or ``(H, W)``.
        in_channels: data channels ``C``.
        num_values: values per channel.
        hidden_channels: ``p``, the width of each stack (at least ``C``).
        num_layers: number of gated layers (vertical + horizontal pairs), the first included (>= 1).
        kernel_size: odd ``k`` of the layers after the first (vertical ``(k//2 + 1) x k``, horizontal
            ``1 x (k//2 + 1)``).
        first_kernel_size: odd ``k`` of the first layer (mask A).
        head_channels: width of the two output layers (default ``hidden_channels``).
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.
        likelihood: ``"categorical"`` (per-channel softmax, channels R -> G -> B) or ``"logistic_mixture"``
            (all channels of a pixel jointly; its parameters read only channel group 0 at the pixel itself).
        num_mixtures: mixture components of the logistic mixture.

    Shapes:
        x: ``(B, C, H, W)`` long -> params ``(B, distribution.num_params, H, W)``
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = 28,
        in_channels: int = 1,
        num_values: int = 256,
        hidden_channels: int = 64,
        num_layers: int = 15,
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
        head_channels = head_channels or hidden_channels
        for name, width in (("hidden_channels", hidden_channels), ("head_channels", head_channels)):
            if not isinstance(width, int) or width < C:
                raise ValueError(f"Expected {name} to be an int >= in_channels = {C}, got {width!r}.")
        for name, k in (("kernel_size", kernel_size), ("first_kernel_size", first_kernel_size)):
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"Expected {name} to be an odd positive int, got {k!r}.")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"Expected num_layers to be an int >= 1, got {num_layers!r}.")
        data, stream = torch.arange(C), channel_groups(hidden_channels, C)
        head, out = channel_groups(head_channels, C), self.distribution.param_groups()

        self.layers = nn.ModuleList(
            GatedLayer(
                C if n == 0 else hidden_channels,
                hidden_channels,
                first_kernel_size if n == 0 else kernel_size,
                "A" if n == 0 else "B",
                data if n == 0 else stream,
                C,
                residual=n > 0,
                num_classes=num_classes,
                cond_channels=cond_channels,
            )
            for n in range(num_layers)
        )
        self.head = MaskedConv2d(hidden_channels, head_channels, 1, "B", in_groups=stream, out_groups=head)
        self.output = MaskedConv2d(head_channels, self.distribution.num_params, 1, "B", in_groups=head, out_groups=out)

    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        v, s = h, h  # both stacks start from the data, (B, C, H, W)
        last = len(self.layers) - 1
        for n, layer in enumerate(self.layers):
            v, s = layer(v, s, class_labels, cond, vertical=n < last)  # (B, p, H, W) each
        return self.output(F.relu(self.head(F.relu(s))))  # (B, C * K, H, W)

    # ------------------------------------------------------------------------------ cached sampling
    def init_cache(
        self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> GatedPixelCNNCache:
        layers = [layer.stepper(batch_size, self.grid_size, class_labels, cond) for layer in self.layers]
        first = layers[0]
        margin = first.v_conv.margin(whole_rows=True).union(first.h_conv.margin())
        return GatedPixelCNNCache(
            canvas=PaddedMap.zeros(batch_size, self.in_channels, self.grid_size, margin, first.v_conv.weight),
            layers=layers,
            head=self.head.stepper(),
            output=self.output.stepper(),
        )

    def forward_step(
        self, cache: GatedPixelCNNCache, pixel: torch.Tensor, i: Index, j: Index, step: int, variant: None
    ) -> torch.Tensor:
        cache.canvas.write(pixel, i, j)  # the channels drawn so far; mask A hides the others
        s = cache.layers[0].horizontal(cache.canvas, i, j)  # (B, p)
        for layer in cache.layers[1:]:
            layer.h_input.write(s, i, j)
            s = s + layer.horizontal(layer.h_input, i, j)
        return cache.output.point(F.relu(cache.head.point(F.relu(s))))  # (B, C * K)

    def commit(self, cache: GatedPixelCNNCache, pixel: torch.Tensor, i: Index, j: Index) -> None:
        cache.canvas.write(pixel, i, j)

    def commit_row(self, cache: GatedPixelCNNCache, i: Index, variant: None) -> None:
        """Run the vertical stack over row ``i`` (final now) and store the links of row ``i + 1``."""
        layers = cache.layers
        pre = layers[0].vertical(cache.canvas, i)  # (B, 2p, W)
        for below, layer in zip(layers, layers[1:], strict=False):
            layer.v_input.write_row(gate(pre + bias_row(below.v_bias, i)), i)
            pre = layer.vertical(layer.v_input, i)


register_prior(
    "gated_pixelcnn_mnist",
    GatedPixelCNN,
    "Gated PixelCNN on binarized MNIST (1x28x28, 2 values): 15 gated layers of 64 maps, 7x7 first and 3x3 later "
    "kernels ([1] reports no MNIST model; the size of common open-source Gated PixelCNN MNIST priors).",
    sample_size=28,
    in_channels=1,
    num_values=2,
    hidden_channels=64,
    num_layers=15,
)
register_prior(
    "gated_pixelcnn_cifar10",
    GatedPixelCNN,
    "Gated PixelCNN on CIFAR-10 (3x32x32, 256 values): 20 gated layers of 384 maps with 5x5 filters, the one "
    "architecture the paper specifies (its ImageNet model; it gives no separate CIFAR-10 size), and 1024-wide "
    "output layers as the PixelRNN paper's CIFAR-10 models.",
    sample_size=32,
    in_channels=3,
    num_values=256,
    hidden_channels=384,
    num_layers=20,
    kernel_size=5,
    first_kernel_size=5,
    head_channels=1024,
)
