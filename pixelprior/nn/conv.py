"""Causal convolutions: masked (PixelCNN) and shifted (Gated PixelCNN vertical stack, PixelCNN++).

All of them are *anchored* convolutions: a ``kh x kw`` kernel whose tap ``anchor`` lies on the output
pixel, zero-padded so that the output has the input's size. Masked convolutions multiply their weight by a
causal mask from :mod:`pixelprior.nn.masks` functionally (``F.conv2d(x, w * mask)``), so masked taps get no
gradient, and zero the masked weights once at init. Shifted convolutions need no mask: their kernel only
covers rows above (and, for the down-right variant, columns left of) the anchor.

Every layer also computes single outputs for cached sampling (:meth:`AnchoredConv2d.stepper`, a :class:`ConvStep`):
the output at one pixel from an input buffer (a :class:`~pixelprior.nn.stepping.PaddedMap`) in which every pixel the
output may read has already been written, and (:meth:`ConvStep.row`) a whole output row for stacks that only look at
complete rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .masks import MaskType, causal_mask
from .stepping import Index, Margin, PaddedMap


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def down_shift(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Shift a map down by ``rows``, filling the top with zeros: output row ``i`` is input row ``i - rows``.

    Shapes:
        x: ``(B, C, H, W)`` -> ``(B, C, H, W)``
    """
    return F.pad(x, (0, 0, rows, 0))[:, :, : x.shape[2]]


def right_shift(x: torch.Tensor, cols: int = 1) -> torch.Tensor:
    """Shift a map right by ``cols``, filling the left with zeros.

    Shapes:
        x: ``(B, C, H, W)`` -> ``(B, C, H, W)``
    """
    return F.pad(x, (cols, 0))[:, :, :, : x.shape[3]]


class AnchoredConv2d(nn.Conv2d):
    """Stride-1 convolution whose tap ``anchor`` lies on the output pixel, with an optional causal mask.

    Args:
        in_channels: input feature maps.
        out_channels: output feature maps.
        kernel_size: ``k`` or ``(kh, kw)``.
        anchor: ``(ai, aj)``, the tap on the output pixel; default the kernel centre.
        mask: optional ``(out, in, kh, kw)`` or ``(1, 1, kh, kw)`` float mask applied functionally.
        bias: whether to add a bias.

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        anchor: tuple[int, int] | None = None,
        mask: torch.Tensor | None = None,
        bias: bool = True,
    ) -> None:
        kh, kw = _pair(kernel_size)
        super().__init__(in_channels, out_channels, (kh, kw), padding=0, bias=bias)
        self.anchor = anchor if anchor is not None else (kh // 2, kw // 2)
        ai, aj = self.anchor
        # F.pad order: (left, right, top, bottom).
        self._pads = (aj, kw - 1 - aj, ai, kh - 1 - ai)
        if mask is not None:
            if mask.shape[-2:] != (kh, kw):
                raise ValueError(f"Expected a mask of kernel size {(kh, kw)}, got {tuple(mask.shape[-2:])}.")
            self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)
            with torch.no_grad():
                self.weight.mul_(self.mask)
        else:
            self.mask = None
        # Rows a single-pixel step reads (all of them here; causal masks zero every row below the anchor).
        self._step_rows = kh

    def masked_weight(self) -> torch.Tensor:
        """The weight with the causal mask applied (the weight itself for shifted convolutions)."""
        return self.weight if self.mask is None else self.weight * self.mask

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``x`` so that the convolution keeps its size (the input itself for a ``1 x 1`` kernel: no copy)."""
        return F.pad(x, self._pads) if any(self._pads) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.masked_weight(), self.bias)

    def stepper(self) -> ConvStep:
        """Weights frozen for cached sampling: call it once per sampling run, not per step."""
        return ConvStep(self)


class ConvStep:
    """Single-pixel and single-row evaluation of an :class:`AnchoredConv2d` for cached sampling.

    Holds the masked weight, flattened once, so that each step is one small matrix product. It reads a
    :class:`~pixelprior.nn.stepping.PaddedMap` whose margin holds its windows (:meth:`margin`).
    """

    def __init__(self, conv: AnchoredConv2d) -> None:
        weight = conv.masked_weight().detach()
        self.rows = conv._step_rows
        self.weight = weight  # (out, in, kh, kw) for row steps
        # (out, in * rows * kw): only the rows that can be non-zero for pixel steps.
        self.flat = weight[:, :, : self.rows].reshape(weight.shape[0], -1)
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.anchor = conv.anchor
        self.kernel_size = tuple(weight.shape[-2:])

    def margin(self, row_offset: int = 0, col_offset: int = 0, whole_rows: bool = False) -> Margin:
        """The margin of a map this step reads at ``(i + row_offset, j + col_offset)`` for every ``(i, j)`` of it.

        ``whole_rows``: the map is also read by :meth:`row` (all ``kh`` kernel rows, not only those to the anchor).
        """
        (ai, aj), (kh, kw) = self.anchor, self.kernel_size
        rows = kh if whole_rows else self.rows
        return Margin(
            max(ai - row_offset, 0), max(aj - col_offset, 0), max(kw - 1 - aj + col_offset, 0), max(rows - 1 - ai, 0)
        )

    def __call__(self, buffer: PaddedMap, i: Index, j: Index) -> torch.Tensor:
        """Output at pixel ``(i, j)``.

        Shapes:
            buffer: ``(B, in, H, W)`` -> ``(B, out)``
        """
        ai, aj = self.anchor
        patch = buffer.window(i - ai, j - aj, self.rows, self.kernel_size[1])
        return F.linear(patch.flatten(1), self.flat, self.bias)

    def point(self, v: torch.Tensor) -> torch.Tensor:
        """Output of a 1x1 convolution from the input at the same pixel(s), channels last.

        Shapes:
            v: ``(..., in)`` -> ``(..., out)`` (one pixel ``(B, in)``, or a row laid out ``(B, W, in)``)
        """
        if self.kernel_size != (1, 1):
            raise ValueError(f"Expected a 1x1 convolution for a per-pixel step, got kernel {self.kernel_size}.")
        return F.linear(v, self.flat, self.bias)

    def row(self, buffer: PaddedMap, i: Index) -> torch.Tensor:
        """Output row ``i``, reading rows ``i - ai .. i - ai + kh - 1`` of the input.

        Shapes:
            buffer: ``(B, in, H, W)`` -> ``(B, out, W)``
        """
        strip = self._strip(buffer, i - self.anchor[0], buffer.size[1])  # (B, in, kh, W + kw - 1)
        if torch.compiler.is_compiling():
            return row_product(strip, self.weight, self.bias)
        return F.conv2d(strip, self.weight, self.bias)[:, :, 0]

    def _strip(self, buffer: PaddedMap, top: Index, width: int) -> torch.Tensor:
        """The ``kh`` input rows from ``top``, columns ``-aj .. width - 1 + kw - 1 - aj``: a row convolution's input.

        Shapes:
            -> ``(B, in, kh, width + kw - 1)``
        """
        (_, aj), (kh, kw) = self.anchor, self.kernel_size
        left = buffer.margin.left - aj
        # Contiguous: the CPU convolution of a strided view is markedly slower (a reorder inside it).
        return buffer.rows(top, kh)[..., left : left + width + kw - 1].contiguous()


def row_product(strip: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1) -> torch.Tensor:
    """The convolution of a ``kh``-row strip to one output row as a single matrix product over its unfolded windows.

    In a compiled step this is one gathering kernel and one matrix product, several times faster on a CPU than the
    convolution of a single output row; eager steps keep ``F.conv2d`` (its own unfolding copies cost more there).

    Shapes:
        strip: ``(B, in, kh, W')``, weight: ``(out, in, kh, kw)`` -> ``(B, out, (W' - kw) // stride + 1)``
    """
    B, (out, _, _, kw) = strip.shape[0], weight.shape
    windows = strip.unfold(3, kw, stride)  # (B, in, kh, W, kw)
    W = windows.shape[3]
    columns = windows.permute(0, 3, 1, 2, 4).reshape(B * W, -1)  # (B W, in kh kw), the weight's order
    product = F.linear(columns, weight.reshape(out, -1), bias)  # (B W, out)
    return product.view(B, W, out).transpose(1, 2)


class MaskedConv2d(AnchoredConv2d):
    """PixelCNN masked convolution (van den Oord et al. 2016): raster-order mask plus channel-group mask.

    Args:
        in_channels: input feature maps.
        out_channels: output feature maps.
        kernel_size: ``k`` or ``(kh, kw)``; any size, odd or even (the anchor says where the pixel is).
        mask_type: ``"A"`` hides the anchor pixel's own group (first layer), ``"B"`` shows it.
        anchor: the tap on the output pixel; default the centre.
        in_groups: ``(in_channels,)`` channel-group ids (see :func:`pixelprior.nn.masks.channel_groups`),
            or ``None`` for a single group.
        out_groups: ``(out_channels,)`` channel-group ids, or ``None``.
        bias: whether to add a bias.

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: MaskType = "B",
        anchor: tuple[int, int] | None = None,
        in_groups: torch.Tensor | None = None,
        out_groups: torch.Tensor | None = None,
        bias: bool = True,
    ) -> None:
        kernel_size = _pair(kernel_size)
        for name, groups, n in (("in_groups", in_groups, in_channels), ("out_groups", out_groups, out_channels)):
            if groups is not None and len(groups) != n:
                raise ValueError(f"Expected {name} of length {n}, got {len(groups)}.")
        mask = causal_mask(kernel_size, mask_type, anchor=anchor, in_groups=in_groups, out_groups=out_groups)
        super().__init__(in_channels, out_channels, kernel_size, anchor=anchor, mask=mask, bias=bias)
        self.mask_type = mask_type
        # A causal mask zeroes every row below the anchor: single-pixel steps read only the rows up to it.
        self._step_rows = self.anchor[0] + 1


class DownShiftedConv2d(AnchoredConv2d):
    """Convolution over the ``kh`` rows ending at the output row, ``kw`` columns centred on it.

    The output at ``(i, j)`` reads rows ``i - kh + 1 .. i`` and columns ``j - kw // 2 .. j + kw // 2``: it sees
    the whole current row, so its result is only used after a :func:`down_shift` (or on shifted input).

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = (2, 3), bias: bool = True
    ) -> None:
        kh, kw = _pair(kernel_size)
        if kw % 2 == 0:
            raise ValueError(f"Expected an odd kernel width for a down-shifted convolution, got {kw}.")
        super().__init__(in_channels, out_channels, (kh, kw), anchor=(kh - 1, kw // 2), bias=bias)


class DownRightShiftedConv2d(AnchoredConv2d):
    """Convolution over the ``kh x kw`` window ending at the output pixel (rows above, columns left).

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = (2, 2), bias: bool = True
    ) -> None:
        kh, kw = _pair(kernel_size)
        super().__init__(in_channels, out_channels, (kh, kw), anchor=(kh - 1, kw - 1), bias=bias)
