"""Strided and transposed shifted convolutions: the down- and upsampling layers of PixelCNN++ [1].

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with Discretized
    Logistic Mixture Likelihood and Other Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517

Both keep the causal geometry of the stride-1 shifted convolutions of :mod:`pixelprior.nn.conv` across a change
of resolution by a factor ``s`` (the stride):

* **strided** (:class:`StridedAnchoredConv2d`, downsampling): the output at ``(i', j')`` is the stride-1
  anchored convolution evaluated at ``(s i', s j')``. A down-shifted one (anchor on the bottom row) at row
  ``i'`` reads input rows ``<= s i'``; a down-right-shifted one (anchor bottom-right) reads the window ending
  at ``(s i', s j')``;
* **transposed** (:class:`ShiftedConvTranspose2d`, upsampling): ``F.conv_transpose2d`` with stride ``s``,
  cropped to ``(s H', s W')`` from the top row and column ``crop_left``. Uncropped output ``(R, C)`` sums
  ``weight[:, :, a, b]`` times input ``(i', j')`` over ``s i' + a = R, s j' + b = C``, so the output at
  ``(r, c)`` reads input rows ``i' <= r // s`` and columns ``j'`` with ``s j' <= c + crop_left``. With
  ``crop_left = 0`` (down-right-shifted) it reads only positions ``(i', j')`` with ``(s i', s j') <= (r, c)``
  componentwise; with ``crop_left = (kw - 1) // 2`` (down-shifted) any column of rows ``<= r // s``.

For cached sampling, :meth:`StridedAnchoredConv2d.stepper` and :meth:`ShiftedConvTranspose2d.stepper` evaluate
one output position or one output row from an input buffer (a :class:`~pixelprior.nn.stepping.PaddedMap`), like
:class:`~pixelprior.nn.conv.ConvStep`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv import AnchoredConv2d, ConvStep, _pair, row_product
from .stepping import Index, Margin, PaddedMap, pick


class StridedAnchoredConv2d(AnchoredConv2d):
    """Anchored convolution with stride ``s``: the stride-1 output subsampled at ``(s_h i', s_w j')``.

    The output has ``ceil(H / s_h) x ceil(W / s_w)`` positions.

    Args:
        in_channels: input feature maps.
        out_channels: output feature maps.
        kernel_size: ``k`` or ``(kh, kw)``.
        anchor: ``(ai, aj)``, the tap on the (subsampled) output pixel.
        stride: ``s`` or ``(s_h, s_w)``.
        bias: whether to add a bias.

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, ceil(H / s_h), ceil(W / s_w))``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        anchor: tuple[int, int],
        stride: int | tuple[int, int] = 2,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, anchor=anchor, bias=bias)
        self.stride = _pair(stride)
        if min(self.stride) < 1:
            raise ValueError(f"Expected a positive stride, got {stride!r}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.masked_weight(), self.bias, stride=self.stride)

    def stepper(self) -> StridedConvStep:
        """Weights frozen for cached sampling: call it once per sampling run, not per step."""
        return StridedConvStep(self)


class StridedConvStep(ConvStep):
    """Single-position and single-row evaluation of a :class:`StridedAnchoredConv2d`, in output coordinates."""

    def __init__(self, conv: StridedAnchoredConv2d) -> None:
        super().__init__(conv)
        self.stride = conv.stride

    def __call__(self, buffer: PaddedMap, i: Index, j: Index) -> torch.Tensor:
        """Output at ``(i, j)`` of the subsampled grid.

        Shapes:
            buffer: ``(B, in, H, W)`` (input resolution) -> ``(B, out)``
        """
        return super().__call__(buffer, self.stride[0] * i, self.stride[1] * j)

    def row(self, buffer: PaddedMap, i: Index) -> torch.Tensor:
        """Output row ``i`` of the subsampled grid, reading input rows ``s_h i - ai .. s_h i - ai + kh - 1``.

        Shapes:
            buffer: ``(B, in, H, W)`` -> ``(B, out, ceil(W / s_w))``
        """
        strip = self._strip(buffer, self.stride[0] * i - self.anchor[0], buffer.size[1])
        if torch.compiler.is_compiling():
            return row_product(strip, self.weight, self.bias, self.stride[1])
        return F.conv2d(strip, self.weight, self.bias, stride=(1, self.stride[1]))[:, :, 0]


class StridedDownShiftedConv2d(StridedAnchoredConv2d):
    """Strided :class:`~pixelprior.nn.DownShiftedConv2d`: output ``(i', j')`` reads rows ``s i' - kh + 1 .. s i'``
    and columns ``s j' - kw // 2 .. s j' + kw // 2`` of the input.

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, ceil(H / s), ceil(W / s))``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = (2, 3),
        stride: int | tuple[int, int] = 2,
        bias: bool = True,
    ) -> None:
        kh, kw = _pair(kernel_size)
        if kw % 2 == 0:
            raise ValueError(f"Expected an odd kernel width for a down-shifted convolution, got {kw}.")
        super().__init__(in_channels, out_channels, (kh, kw), (kh - 1, kw // 2), stride=stride, bias=bias)


class StridedDownRightShiftedConv2d(StridedAnchoredConv2d):
    """Strided :class:`~pixelprior.nn.DownRightShiftedConv2d`: output ``(i', j')`` reads the ``kh x kw`` window
    of the input ending at ``(s i', s j')``.

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, ceil(H / s), ceil(W / s))``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = 2,
        bias: bool = True,
    ) -> None:
        kh, kw = _pair(kernel_size)
        super().__init__(in_channels, out_channels, (kh, kw), (kh - 1, kw - 1), stride=stride, bias=bias)


class ShiftedConvTranspose2d(nn.ConvTranspose2d):
    """Transposed convolution with stride ``s``, cropped to ``(s_h H, s_w W)`` from column ``crop_left``.

    Output ``(r, c)`` reads input rows ``<= r // s_h`` (see the module docstring for the exact taps).

    Args:
        in_channels: input feature maps.
        out_channels: output feature maps.
        kernel_size: ``(kh, kw)`` with ``kh >= s_h`` and ``kw - crop_left >= s_w`` (every output is covered).
        stride: ``s`` or ``(s_h, s_w)``.
        crop_left: uncropped columns dropped on the left: ``(kw - 1) // 2`` centres the kernel
            (down-shifted), ``0`` keeps it left of the output (down-right-shifted).
        bias: whether to add a bias.

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, s_h H, s_w W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 2,
        crop_left: int = 0,
        bias: bool = True,
    ) -> None:
        (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride)
        if min(sh, sw) < 1 or kh < sh or kw - crop_left < sw or crop_left < 0:
            raise ValueError(
                f"Expected stride >= 1, kernel height >= stride and kernel width - crop_left >= stride, got "
                f"kernel {(kh, kw)}, stride {(sh, sw)}, crop_left {crop_left}."
            )
        super().__init__(in_channels, out_channels, (kh, kw), stride=(sh, sw), bias=bias)
        self.crop_left = crop_left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (sh, sw), (H, W) = self.stride, x.shape[-2:]
        y = F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride)  # (B, out, (H-1)sh+kh, (W-1)sw+kw)
        return y[:, :, : sh * H, self.crop_left : self.crop_left + sw * W]

    def stepper(self) -> ConvTransposeStep:
        """Weights frozen for cached sampling: call it once per sampling run, not per step."""
        return ConvTransposeStep(self)


class ConvTransposeStep:
    """Single-pixel and single-row evaluation of a :class:`ShiftedConvTranspose2d` for cached sampling.

    The taps that reach an output pixel depend only on its position modulo the stride: for each of the
    ``s_h s_w`` parities the contributing taps, their input offsets and their weights (flattened to one matrix)
    are found once, so a pixel step is one small matrix product. The parities' matrices are stacked (parities with
    fewer taps padded with zero taps), so that a tensor position selects its own by indexing, without a branch.
    """

    def __init__(self, conv: ShiftedConvTranspose2d) -> None:
        weight = conv.weight.detach()  # (in, out, kh, kw)
        self.weight = weight
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.stride = conv.stride
        self.crop_left = conv.crop_left
        (sh, sw), (kh, kw) = self.stride, weight.shape[-2:]
        # parity pr * sw + pc of (r % sh, c % sw) -> the input offsets (di, dj) from (r // sh, c // sw) of its taps
        self.offsets: list[list[tuple[int, int]]] = []
        flats = []
        for pr in range(sh):
            for pc in range(sw):
                taps = [
                    (a, b)
                    for a in range(kh)
                    for b in range(kw)
                    if (pr - a) % sh == 0 and (pc + self.crop_left - b) % sw == 0
                ]
                self.offsets.append([((pr - a) // sh, (pc + self.crop_left - b) // sw) for a, b in taps])
                flats.append(torch.cat([weight[:, :, a, b].t() for a, b in taps], dim=1))  # (out, taps * in)
        most = max(len(offsets) for offsets in self.offsets)
        for p, offsets in enumerate(self.offsets):
            if len(offsets) < most:  # zero taps at offset (0, 0): the same sum
                flats[p] = F.pad(flats[p], (0, (most - len(offsets)) * weight.shape[0]))
                offsets += [(0, 0)] * (most - len(offsets))
        self.flat = torch.stack(flats)  # (parities, out, most * in)
        self.offset_table = torch.tensor(self.offsets, device=weight.device)  # (parities, most, 2)

    def margin(self) -> Margin:
        """The margin of the input map that every pixel step's reads stay inside."""
        rows = [di for offsets in self.offsets for di, _ in offsets]
        cols = [dj for offsets in self.offsets for _, dj in offsets]
        return Margin(max(-min(rows), 0), max(-min(cols), 0), max(max(cols), 0), max(max(rows), 0))

    def __call__(self, buffer: PaddedMap, r: Index, c: Index) -> torch.Tensor:
        """Output at pixel ``(r, c)`` of the upsampled grid.

        Shapes:
            buffer: ``(B, in, H, W)`` (input resolution) -> ``(B, out)``
        """
        sh, sw = self.stride
        i, j = r // sh, c // sw
        parity = (r % sh) * sw + c % sw
        if isinstance(parity, int):
            reads = torch.cat([buffer.at(i + di, j + dj) for di, dj in self.offsets[parity]], dim=1)
        else:
            offsets = pick(self.offset_table, 0, parity)  # (taps, 2)
            rows, cols = buffer.margin.top + i + offsets[:, 0], buffer.margin.left + j + offsets[:, 1]
            reads = buffer.data[:, :, rows, cols].transpose(1, 2).flatten(1)  # (B, taps * in), tap-major
        return F.linear(reads, pick(self.flat, 0, parity), self.bias)  # (B, out)

    def row(self, buffer: PaddedMap, r: Index, parity: int | None = None) -> torch.Tensor:
        """Output row ``r`` of the upsampled grid, reading input rows ``(r - a) / s_h`` for the taps ``a``.

        Args:
            buffer: the input map.
            r: the output row.
            parity: ``r % s_h``, given by the caller when ``r`` is a tensor (it fixes the taps that reach the row).

        Shapes:
            buffer: ``(B, in, H, W)`` -> ``(B, out, s_w W)``
        """
        (sh, sw), (B, W) = self.stride, (buffer.data.shape[0], buffer.size[1])
        parity = r % sh if parity is None else parity
        kh = self.weight.shape[2]
        out = buffer.data.new_zeros(B, self.weight.shape[1], (W - 1) * sw + self.weight.shape[3])
        for a in range(kh):
            i = (r - a) // sh
            if (parity - a) % sh == 0 and not (isinstance(i, int) and i < 0):  # a margin row adds zeros
                out = out + F.conv_transpose1d(buffer.row(i), self.weight[:, :, a], stride=sw)
        out = out[:, :, self.crop_left : self.crop_left + sw * W]
        return out if self.bias is None else out + self.bias[:, None]

    def row_margin(self) -> Margin:
        """The margin of the input map that the row steps' reads stay inside (rows above the first)."""
        kh, sh = self.weight.shape[2], self.stride[0]
        return Margin(top=(kh - 1) // sh)


class DownShiftedConvTranspose2d(ShiftedConvTranspose2d):
    """Upsampling counterpart of :class:`StridedDownShiftedConv2d` (the kernel centred, ``crop_left = kw // 2``).

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, s H, s W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = (2, 3),
        stride: int | tuple[int, int] = 2,
        bias: bool = True,
    ) -> None:
        kh, kw = _pair(kernel_size)
        if kw % 2 == 0:
            raise ValueError(f"Expected an odd kernel width for a down-shifted convolution, got {kw}.")
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride, crop_left=kw // 2, bias=bias)


class DownRightShiftedConvTranspose2d(ShiftedConvTranspose2d):
    """Upsampling counterpart of :class:`StridedDownRightShiftedConv2d` (``crop_left = 0``).

    Shapes:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, s H, s W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = 2,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, crop_left=0, bias=bias)
