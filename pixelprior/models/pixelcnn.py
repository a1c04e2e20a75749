"""PixelCNN [1]: a stack of masked convolutions with residual blocks.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    https://arxiv.org/abs/1601.06759

Architecture (section 3.4 and figure 5 of [1]), ``F = hidden_channels`` (the paper's ``2h``):

* a ``7 x 7`` convolution with mask A (the pixel itself hidden) from the ``C`` data channels to ``F`` maps;
* ``num_layers`` residual blocks ``ReLU -> 1x1 (F -> F/2) -> ReLU -> 3x3 mask B (F/2 -> F/2) -> ReLU ->
  1x1 (F/2 -> F)``, added to the stream;
* two output layers ``ReLU -> 1x1 -> ReLU -> 1x1`` to ``C x num_values`` logits: a softmax over the values
  of each channel.

With ``C > 1`` every feature map belongs to one of ``C`` channel groups and all convolutions (the 1x1 ones
too) carry the R -> G -> B channel masks, so the logits of G see R of their own pixel, and B sees R and G.

**The blind spot.** Stacked ``3 x 3`` masked convolutions see a region that grows up and to the left but
never reaches the pixels above and to the right of the current one beyond a diagonal: after the ``7 x 7``
first layer, pixel ``(i, j)`` cannot see ``(i - r, j + c)`` whenever ``c > r + 2``, however deep the network
(section 2 of the Gated PixelCNN paper). The likelihood is still exact: those pixels are simply ignored.
:class:`~pixelprior.models.gated_pixelcnn.GatedPixelCNN` removes the blind spot; the tests pin it down here.

NOTE: unlike [1], class labels and spatial conditions (``num_classes``, ``cond_channels``) are supported as a
bias added after every residual block, as in the conditional PixelCNN of van den Oord et al. 2016.

Cached sampling: every ``k x k`` masked convolution keeps its input map; a step writes the new pixel's
features into it and reads back only the ``k x k`` window of the new pixel. ``1 x 1`` layers are per-pixel. The
first layer reads a copy of the canvas, in which each pixel's values drawn so far are written at its steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..nn import ConditionBias, ConvStep, MaskedConv2d, bias_at, channel_groups
from ..nn.stepping import Index, PaddedMap, StepCache
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class


class PixelCNNBlock(nn.Module):
    """Residual block of [1] (figure 5): ``F -> F/2 -> F/2 -> F`` with a masked ``k x k`` middle layer.

    Shapes:
        x: ``(B, F, H, W)`` -> ``(B, F, H, W)`` (the residual branch only; the caller adds it)
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        wide, narrow = channel_groups(channels, groups), channel_groups(channels // 2, groups)
        self.reduce = MaskedConv2d(channels, channels // 2, 1, "B", in_groups=wide, out_groups=narrow)
        self.conv = MaskedConv2d(channels // 2, channels // 2, kernel_size, "B", in_groups=narrow, out_groups=narrow)
        self.expand = MaskedConv2d(channels // 2, channels, 1, "B", in_groups=narrow, out_groups=wide)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(F.relu(self.conv(F.relu(self.reduce(F.relu(x))))))

    def stepper(self, batch_size: int, size: tuple[int, int]) -> PixelCNNBlockStep:
        """State for cached sampling (one per sampling run)."""
        conv = self.conv.stepper()
        like = conv.weight
        return PixelCNNBlockStep(
            self.reduce.stepper(),
            conv,
            self.expand.stepper(),
            PaddedMap.zeros(batch_size, conv.weight.shape[1], size, conv.margin(), like),
        )


@dataclass
class PixelCNNBlockStep:
    """A :class:`PixelCNNBlock` at one pixel: its frozen weights and the input map of its ``k x k`` convolution."""

    reduce: ConvStep
    conv: ConvStep
    expand: ConvStep
    buffer: PaddedMap  # (B, F/2, H, W): relu(reduce(relu(x))) at every pixel stepped so far

    def __call__(self, x: torch.Tensor, i: Index, j: Index) -> torch.Tensor:
        """Shapes: x: ``(B, F)`` -> ``(B, F)`` (the residual branch)."""
        self.buffer.write(F.relu(self.reduce.point(F.relu(x))), i, j)
        return self.expand.point(F.relu(self.conv(self.buffer, i, j)))


@dataclass(kw_only=True)
class PixelCNNCache(StepCache):
    """Cached-sampling state of a :class:`PixelCNN`."""

    canvas: PaddedMap  # (B, C, H, W): the encoded values, read by the input layer
    input_conv: ConvStep
    blocks: list[PixelCNNBlockStep]
    biases: list[torch.Tensor | None]  # each block's conditioning bias, (B, F, H, W), (B, F, 1, 1) or None
    head: ConvStep
    output: ConvStep


@register_prior_class
class PixelCNN(AutoregressivePrior):
    """PixelCNN of van den Oord et al. 2016 (masked convolutions, residual blocks, per-channel softmax).

    Args:
        sample_size: ``int`` or ``(H, W)``.
        in_channels: data channels ``C``.
        num_values: values per channel.
        hidden_channels: ``F``, the width of the residual stream (the paper's ``2h``; at least ``2 C``).
        num_layers: number of residual blocks.
        kernel_size: kernel of the blocks' masked convolutions (3 in [1]).
        first_kernel_size: kernel of the mask-A input convolution (7 in [1]).
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
        hidden_channels: int = 128,
        num_layers: int = 7,
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
        if hidden_channels < 2 * C:
            raise ValueError(f"Expected hidden_channels >= 2 * in_channels = {2 * C}, got {hidden_channels}.")
        for name, k in (("kernel_size", kernel_size), ("first_kernel_size", first_kernel_size)):
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"Expected {name} to be an odd positive int, got {k!r}.")
        if num_layers < 0:
            raise ValueError(f"Expected num_layers >= 0, got {num_layers}.")
        head_channels = head_channels or hidden_channels
        data, stream = torch.arange(C), channel_groups(hidden_channels, C)
        head, out = channel_groups(head_channels, C), self.distribution.param_groups()

        self.input_conv = MaskedConv2d(C, hidden_channels, first_kernel_size, "A", in_groups=data, out_groups=stream)
        self.blocks = nn.ModuleList(PixelCNNBlock(hidden_channels, kernel_size, C) for _ in range(num_layers))
        self.cond_biases = nn.ModuleList(
            ConditionBias(hidden_channels, num_classes, cond_channels) for _ in range(num_layers)
        )
        self.head = MaskedConv2d(hidden_channels, head_channels, 1, "B", in_groups=stream, out_groups=head)
        self.output = MaskedConv2d(head_channels, self.distribution.num_params, 1, "B", in_groups=head, out_groups=out)

    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        s = self.input_conv(h)  # (B, F, H, W)
        for block, cond_bias in zip(self.blocks, self.cond_biases, strict=True):
            s = s + block(s)
            bias = cond_bias(class_labels, cond)
            if bias is not None:
                s = s + bias
        return self.output(F.relu(self.head(F.relu(s))))  # (B, P, H, W)

    # ------------------------------------------------------------------------------ cached sampling
    def init_cache(
        self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> PixelCNNCache:
        input_conv = self.input_conv.stepper()
        canvas = PaddedMap.zeros(batch_size, self.in_channels, self.grid_size, input_conv.margin(), input_conv.weight)
        return PixelCNNCache(
            canvas=canvas,
            input_conv=input_conv,
            blocks=[block.stepper(batch_size, self.grid_size) for block in self.blocks],
            biases=[cond_bias(class_labels, cond) for cond_bias in self.cond_biases],
            head=self.head.stepper(),
            output=self.output.stepper(),
        )

    def forward_step(
        self, cache: PixelCNNCache, pixel: torch.Tensor, i: Index, j: Index, step: int, variant: None
    ) -> torch.Tensor:
        cache.canvas.write(pixel, i, j)  # the channels drawn so far; mask A hides the others
        s = cache.input_conv(cache.canvas, i, j)  # (B, F)
        for block, bias in zip(cache.blocks, cache.biases, strict=True):
            s = s + block(s, i, j) + bias_at(bias, i, j)
        return cache.output.point(F.relu(cache.head.point(F.relu(s))))  # (B, P)

    def commit(self, cache: PixelCNNCache, pixel: torch.Tensor, i: Index, j: Index) -> None:
        cache.canvas.write(pixel, i, j)


register_prior(
    "pixelcnn_mnist",
    PixelCNN,
    "PixelCNN on binarized MNIST (1x28x28, 2 values), 7 residual blocks of width 2h=128, as the paper's MNIST depth.",
    sample_size=28,
    in_channels=1,
    num_values=2,
    hidden_channels=128,
    num_layers=7,
)
register_prior(
    "pixelcnn_cifar10",
    PixelCNN,
    "PixelCNN on CIFAR-10 (3x32x32, 256 values): 15 residual blocks, 2h=256, 1024-wide output layers.",
    sample_size=32,
    in_channels=3,
    num_values=256,
    hidden_channels=256,
    num_layers=15,
    head_channels=1024,
)
