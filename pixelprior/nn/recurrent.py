"""Two-dimensional LSTM layers of PixelRNN [1]: the LSTM update, skewing, the Row LSTM and the Diagonal BiLSTM.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    https://arxiv.org/abs/1601.06759

Both layers take a map ``x`` of ``in_channels`` features and return the hidden states ``(b, u, h, w)`` of ``u``
LSTM units per position (the paper's ``h``). The four gates of a unit are ``4u`` maps ``[o | f | i | g]``
(equation 3 of [1]): ``c = sigmoid(f) * c_prev + sigmoid(i) * tanh(g)``, ``h = sigmoid(o) * tanh(c)``.

Causality (raster order, R -> G -> B within a pixel):

* the **input-to-state** convolution reads the current pixel and pixels before it in its row. It is a
  :class:`~pixelprior.nn.MaskedConv2d` with mask B, its ``4u`` output maps grouped as ``[o | f | i | g]``, each
  gate's ``u`` maps in the channel groups of the units (:func:`~pixelprior.nn.masks.channel_groups`), so that
  unit ``n`` of group ``g`` reads groups ``<= g`` of the current pixel;
* the **state-to-state** convolution reads states of positions strictly before the current one (the previous
  row; the previous diagonal), where every channel is already known, so it needs no mask ([1], table 4: "s-s:
  no mask"). The LSTM update is elementwise per unit, so the states keep the groups of their gates;
* the Diagonal BiLSTM's right-to-left scan is read a row below (its output is shifted down), so it may read anything
  in its own row: with ``context_channels`` it also reads the data at each position (see :class:`DiagonalBiLSTM`).

Einops letters: ``b`` batch, ``c`` input features, ``u`` LSTM units, ``(four u)`` the gate maps, ``h w`` grid rows
and columns, ``d`` columns of a skewed map (``w + h - 1``; column ``d`` holds the pixels with ``i + j = d``).

Cached sampling: each layer has a stepper (:meth:`RowLSTM.stepper`, :meth:`DiagonalBiLSTM.stepper`) that keeps
its input map and the LSTM states and computes the hidden state of one position from its input there (every
position before it has been stepped), and whose ``commit_row`` is told when a row is final.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import bias_at
from .conv import MaskedConv2d, down_shift
from .masks import channel_groups
from .stepping import Index, Margin, PaddedMap, pick, put


def lstm_update(gates: torch.Tensor, c_prev: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM update of [1] (equation 3) from the summed gate pre-activations ``[o | f | i | g]`` along ``dim``.

    Shapes:
        gates: ``(b, (four u), ...)``, c_prev: ``(b, u, ...)`` -> h: ``(b, u, ...)``, c: ``(b, u, ...)`` (``dim=1``)
    """
    o, f, i, g = gates.chunk(4, dim=dim)  # (b, u, ...) each
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def skew(x: torch.Tensor) -> torch.Tensor:
    """Shift row ``r`` of a map right by ``r`` so that the diagonals ``i + j = d`` become the columns ``d``.

    The positions left and right of the shifted rows are zero.

    Shapes:
        x: ``(b, c, h, w)`` -> ``(b, c, h, w + h - 1)``

    Example:
        >>> skew(torch.arange(4.0).view(1, 1, 2, 2))[0, 0]
        tensor([[0., 1., 0.],
                [0., 2., 3.]])
    """
    B, C, H, W = x.shape
    # Rows of length w + h laid end to end, re-cut into rows of length w + h - 1: each row starts one later.
    flat = F.pad(x, (0, H)).flatten(2)  # (b, c, h * (w + h))
    return flat[:, :, : H * (W + H - 1)].view(B, C, H, W + H - 1)


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of :func:`skew`: row ``r`` of the result is columns ``r .. r + width - 1`` of row ``r``.

    Shapes:
        x: ``(b, c, h, width + h - 1)`` -> ``(b, c, h, width)``
    """
    B, C, H, D = x.shape
    if D != width + H - 1:
        raise ValueError(f"Expected a skewed map of width {width + H - 1} (width + height - 1), got {D}.")
    # Rows of length w + h - 1 laid end to end, re-cut into rows of length w + h: each row starts one earlier.
    flat = F.pad(x.flatten(2), (0, H))  # (b, c, h * (w + h))
    return flat.view(B, C, H, width + H)[..., :width]


def _gate_groups(hidden_channels: int, num_groups: int) -> torch.Tensor:
    """Channel groups of the ``4u`` gate maps ``[o | f | i | g]``: each gate grouped like the ``u`` units."""
    return channel_groups(hidden_channels, num_groups).repeat(4)


def _check_sizes(in_channels: int, hidden_channels: int, num_groups: int) -> None:
    for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels)):
        if not isinstance(value, int) or value < num_groups:
            raise ValueError(f"Expected {name} to be an int >= {num_groups} (one per channel group), got {value!r}.")


class RowLSTM(nn.Module):
    """Row LSTM of [1] (section 3.1): the states of a whole row at once from the row above.

    The gates of row ``i`` are ``K_is * x_i + K_ss * h_{i-1}``: the input-to-state convolution runs along the row
    over the current pixel and the ``k // 2`` pixels left of it (mask B), the state-to-state convolution over the
    ``k`` states of the previous row centred on the column. The cell state is carried down each column.

    The receptive field of a state is a triangle: row ``i - d`` is read up to ``d * (k // 2)`` columns right of the
    pixel, never further (the pixels above-right beyond it are a blind spot; see :mod:`pixelprior.models.pixelrnn`).

    Args:
        in_channels: input features.
        hidden_channels: ``u``, LSTM units.
        kernel_size: odd ``k`` of both convolutions (3 in [1]).
        in_groups: ``(in_channels,)`` channel groups of the input (default ``channel_groups(in_channels, groups)``).
        num_groups: ``C``, the number of channel groups (data channels).

    Shapes:
        x: ``(b, c, h, w)``, bias: ``(b, (four u), h, w)``, ``(b, (four u), 1, 1)`` or ``None`` -> ``(b, u, h, w)``

    Example:
        >>> lstm = RowLSTM(8, 4, kernel_size=3)
        >>> lstm(torch.randn(2, 8, 5, 6)).shape
        torch.Size([2, 4, 5, 6])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        in_groups: torch.Tensor | None = None,
        num_groups: int = 1,
    ) -> None:
        super().__init__()
        _check_sizes(in_channels, hidden_channels, num_groups)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Expected an odd positive kernel_size, got {kernel_size!r}.")
        u, half = hidden_channels, kernel_size // 2
        in_groups = channel_groups(in_channels, num_groups) if in_groups is None else in_groups
        self.hidden_channels, self.kernel_size = u, kernel_size
        self.gate_channels = 4 * u
        # Only the causal taps (the k // 2 pixels left of the current one, and the current one) are stored.
        self.input_to_state = MaskedConv2d(
            in_channels,
            4 * u,
            (1, half + 1),
            "B",
            anchor=(0, half),
            in_groups=in_groups,
            out_groups=_gate_groups(u, num_groups),
        )
        # One bias per gate is enough: the input-to-state convolution has it.
        self.state_to_state = nn.Conv1d(u, 4 * u, kernel_size, padding=half, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        B, _, H, W = x.shape
        gates = self.input_to_state(x)  # (b, 4u, h, w)
        if bias is not None:
            gates = gates + bias
        h = c = x.new_zeros(B, self.hidden_channels, W)  # the states above the first row
        rows = []
        # unbind, not indexing: the backward of H slices would write H zero maps of the whole size.
        for row in gates.unbind(dim=2):  # (b, 4u, w)
            h, c = lstm_update(row + self.state_to_state(h), c)  # (b, u, w) each
            rows.append(h)
        return torch.stack(rows, dim=2)  # (b, u, h, w)

    def stepper(self, batch_size: int, grid_size: tuple[int, int], bias: torch.Tensor | None = None) -> RowLSTMStep:
        """State for cached sampling (one per sampling run); ``bias`` as in :meth:`forward`."""
        return RowLSTMStep(self, batch_size, grid_size, bias)


class RowLSTMStep:
    """Cached sampling of a :class:`RowLSTM`: its input map, the previous row's states and their state-to-state gates.

    When row ``i`` is final (:meth:`commit_row`), its states become the previous row's and their state-to-state
    contribution to every gate of row ``i + 1`` is computed at once; each position then adds its input-to-state gates,
    which read the current row of the input map up to the position.
    """

    def __init__(
        self, lstm: RowLSTM, batch_size: int, grid_size: tuple[int, int], bias: torch.Tensor | None = None
    ) -> None:
        self.input_to_state = lstm.input_to_state.stepper()
        like = self.input_to_state.weight
        self.inputs = PaddedMap.zeros(
            batch_size, like.shape[1], grid_size, self.input_to_state.margin(), like
        )  # (b, c, h, w): the layer's input at every position stepped so far
        self.state_weight = lstm.state_to_state.weight.detach()  # (4u, u, k)
        self.padding = lstm.kernel_size // 2
        self.bias = bias
        zeros = like.new_zeros(batch_size, lstm.hidden_channels, grid_size[1])
        self.h_prev, self.c_prev = zeros, zeros.clone()  # (b, u, w): row i - 1 (zero above the first row)
        self.h, self.c = zeros.clone(), zeros.clone()  # (b, u, w): row i, filled position by position
        self.recurrent = F.conv1d(self.h_prev, self.state_weight, padding=self.padding)  # (b, 4u, w): K_ss * h_{i-1}

    def commit_row(self, i: Index, context: PaddedMap | None = None) -> None:
        """Row ``i`` is final: its states feed row ``i + 1`` (``context`` is not read: the Row LSTM has none)."""
        # Copied, not swapped or rebound: a CUDA graph of the step replays on the tensors it was captured with.
        self.h_prev.copy_(self.h)
        self.c_prev.copy_(self.c)
        self.recurrent.copy_(F.conv1d(self.h_prev, self.state_weight, padding=self.padding))

    def __call__(self, x: torch.Tensor, i: Index, j: Index) -> torch.Tensor:
        """Hidden state at ``(i, j)`` from the layer input ``x`` there.

        Shapes:
            x: ``(b, c)`` -> ``(b, u)``
        """
        self.inputs.write(x, i, j)
        gates = self.input_to_state(self.inputs, i, j) + bias_at(self.bias, i, j) + pick(self.recurrent, 2, j)
        h, c = lstm_update(gates, pick(self.c_prev, 2, j))  # (b, u) each
        put(self.h, 2, j, h)
        put(self.c, 2, j, c)
        return h


def _scan_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """State-to-state kernels ``(groups four u, u, 2)`` of ``[up, left]`` taps as matrices ``(groups, 2u, 4u)``.

    Row ``t u + n`` of a matrix is tap ``t`` of input unit ``n``: they multiply ``[h_up | h_left]``.
    """
    gates, u, _ = weight.shape
    per_group = weight.view(groups, gates // groups, u, 2)  # (g, 4u, u, tap)
    return per_group.permute(0, 3, 2, 1).reshape(groups, 2 * u, gates // groups)


def diagonal_scan(gates: torch.Tensor, weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The diagonal LSTM scan of [1] (section 3.2) over ``groups`` independent scans with their own weights.

    The gates are skewed (:func:`skew`) so that the diagonals are columns; column ``d`` adds the ``2x1``
    state-to-state convolution of column ``d - 1`` (the states above and left of each pixel; zero outside the image)
    to its input gates and applies :func:`lstm_update` (the cell state comes from the left). The states are unskewed.
    The convolution is a matrix product of the concatenated ``[up | left]`` states, channels last.

    Args:
        gates: input-to-state gates in image space, ``groups`` scans stacked along the batch, each sample's scans
            consecutive (``(b groups)``).
        weight: ``(groups four u, u, 2)`` state-to-state kernels ``[up, left]``, the scans' kernels concatenated.
        groups: number of scans.

    Shapes:
        gates: ``((b groups), (four u), h, w)`` -> ``((b groups), u, h, w)``
    """
    N, G4, H, W = gates.shape
    u = G4 // 4
    matrices = _scan_weight(weight, groups)  # (g, 2u, 4u)
    # unbind, not indexing: the backward of d slices would write d zero maps of the whole size.
    columns = skew(gates).permute(3, 0, 2, 1).unbind(0)  # d x (n, h, 4u)
    inside = skew(gates.new_ones(1, 1, H, W))[0, 0].T.unsqueeze(-1).unbind(0)  # d x (h, 1): 0 on the padding
    h = c = gates.new_zeros(N, H, u)  # column d - 1 of the states, channels last
    states = []
    for column, mask in zip(columns, inside, strict=True):
        # Row r of column d reads rows r - 1 (the pixel above) and r (the pixel left) of column d - 1.
        up = F.pad(h, (0, 0, 1, 0))[:, :H]  # (n, h, u)
        recurrent = torch.matmul(torch.cat([up, h], dim=-1).view(N // groups, groups, H, 2 * u), matrices)
        h, c = lstm_update(column + recurrent.view(N, H, G4), c, dim=-1)  # (n, h, u) each
        h, c = h * mask, c * mask  # states outside the image are zero
        states.append(h)
    return unskew(torch.stack(states, dim=-1).transpose(1, 2), W)  # (n, u, h, w)


class DiagonalLSTM(nn.Module):
    """One direction of the Diagonal BiLSTM of [1] (section 3.2): a left-to-right scan of the diagonals.

    The map is skewed (:func:`skew`) so that the diagonals ``i + j = d`` are columns, and the columns are processed
    in order: the gates of column ``d`` are a ``1x1`` input-to-state convolution (mask B) plus a ``2x1``
    state-to-state convolution of column ``d - 1`` (the states up and left of each pixel in the image); the cell
    state comes from the left. States outside the image are zero. The result is unskewed.

    The state at ``(i, j)`` depends on the input at every position ``(i', j')`` with ``i' <= i`` and ``j' <= j``.

    Args:
        in_channels: input features.
        hidden_channels: ``u``, LSTM units.
        in_groups: ``(in_channels,)`` channel groups of the input (default ``channel_groups(in_channels, groups)``).
        num_groups: ``C``, the number of channel groups (data channels).

    Shapes:
        x: ``(b, c, h, w)``, bias: ``(b, (four u), h, w)``, ``(b, (four u), 1, 1)`` or ``None`` -> ``(b, u, h, w)``
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, in_groups: torch.Tensor | None = None, num_groups: int = 1
    ) -> None:
        super().__init__()
        _check_sizes(in_channels, hidden_channels, num_groups)
        u = hidden_channels
        in_groups = channel_groups(in_channels, num_groups) if in_groups is None else in_groups
        self.hidden_channels, self.gate_channels = u, 4 * u
        self.input_to_state = MaskedConv2d(
            in_channels, 4 * u, 1, "B", in_groups=in_groups, out_groups=_gate_groups(u, num_groups)
        )
        # Taps [up, left] over column d - 1 of the skewed map: row r - 1 (the pixel above) and row r (the left one).
        self.state_to_state = nn.Conv1d(u, 4 * u, 2, bias=False)

    def input_gates(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The input-to-state gates (plus the conditioning bias) of every position, in image space.

        Shapes:
            x: ``(b, c, h, w)`` -> ``(b, (four u), h, w)``
        """
        gates = self.input_to_state(x)
        return gates if bias is None else gates + bias

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return diagonal_scan(self.input_gates(x, bias), self.state_to_state.weight)  # (b, u, h, w)


class DiagonalBiLSTM(nn.Module):
    """Diagonal BiLSTM of [1] (section 3.2): two diagonal scans, the right-to-left one shifted down a row.

    The left-to-right scan (:class:`DiagonalLSTM`) at ``(i, j)`` covers the pixels above-left of it and the row up
    to it; the right-to-left scan (the same layer on the horizontally flipped map, flipped back) covers the pixels
    above-right, but also the current row right of the pixel, so its output is shifted down one row before the two
    are added.

    The input of a layer at a pixel never holds the pixel itself (the first layer of a PixelRNN has mask A), so the
    right-to-left scan of row ``i - 1`` would never read the last pixel of that row, which reaches the network only
    through later positions: ``(i, j)`` would not see ``(i - 1, w - 1)`` unless the first layer reaches it. With
    ``context_channels``, the right-to-left scan also reads a *context* map at each position (the data itself, through
    a ``1 x 1`` convolution without mask: its output is only read a row below, where the whole row is known), and the
    layer sees every earlier pixel.

    Args:
        in_channels: input features.
        hidden_channels: ``u``, LSTM units of each direction.
        in_groups: ``(in_channels,)`` channel groups of the input.
        num_groups: ``C``, the number of channel groups (data channels).
        context_channels: maps of the context the right-to-left scan reads (0: none).

    Shapes:
        x: ``(b, c, h, w)``, bias: ``(b, (two four u), h, w)`` ([left-to-right | right-to-left] gates),
        ``(b, (two four u), 1, 1)`` or ``None``, context: ``(b, context_channels, h, w)`` -> ``(b, u, h, w)``

    Example:
        >>> lstm = DiagonalBiLSTM(8, 4)
        >>> lstm(torch.randn(2, 8, 5, 6)).shape
        torch.Size([2, 4, 5, 6])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        in_groups: torch.Tensor | None = None,
        num_groups: int = 1,
        context_channels: int = 0,
    ) -> None:
        super().__init__()
        self.hidden_channels, self.gate_channels = hidden_channels, 8 * hidden_channels
        self.left_to_right = DiagonalLSTM(in_channels, hidden_channels, in_groups, num_groups)
        self.right_to_left = DiagonalLSTM(in_channels, hidden_channels, in_groups, num_groups)
        self.context_to_state = (
            nn.Conv2d(context_channels, 4 * hidden_channels, 1, bias=False) if context_channels else None
        )

    def _check_context(self, context: torch.Tensor | None) -> None:
        if (context is None) != (self.context_to_state is None):
            expected = "no context" if self.context_to_state is None else "a context map"
            raise ValueError(f"Expected {expected}, got {'none' if context is None else 'one'}.")

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        self._check_context(context)
        B, _, H, W = x.shape
        left_bias, right_bias = bias.chunk(2, dim=1) if bias is not None else (None, None)
        # The right-to-left scan is a left-to-right scan of the flipped map: both run as one grouped scan.
        left = self.left_to_right.input_gates(x, left_bias)  # (b, 4u, h, w)
        right = self.right_to_left.input_gates(x, right_bias)  # (b, 4u, h, w)
        if context is not None:
            right = right + self.context_to_state(context)
        right = right.flip(-1)
        gates = torch.stack([left, right], dim=1).flatten(0, 1)  # ((b two), 4u, h, w)
        weight = torch.cat([self.left_to_right.state_to_state.weight, self.right_to_left.state_to_state.weight])
        states = diagonal_scan(gates, weight, groups=2).view(B, 2, self.hidden_channels, H, W)
        # The right-to-left states read the row right of the pixel: shifted down a row, they only read rows above.
        return states[:, 0] + down_shift(states[:, 1].flip(-1))

    def stepper(
        self, batch_size: int, grid_size: tuple[int, int], bias: torch.Tensor | None = None
    ) -> DiagonalBiLSTMStep:
        """State for cached sampling (one per sampling run); ``bias`` as in :meth:`forward`."""
        return DiagonalBiLSTMStep(self, batch_size, grid_size, bias)


class DiagonalBiLSTMStep:
    """Cached sampling of a :class:`DiagonalBiLSTM`.

    The left-to-right scan runs per position: the state at ``(i, j)`` from the stored states at ``(i - 1, j)`` and
    ``(i, j - 1)`` (zero outside the image: the margin of the state maps). The right-to-left scan feeds row ``i + 1``
    only through row ``i``: when row ``i`` is final (:meth:`commit_row`) it is computed right to left over the stored
    input row ``i`` (and the context), once per row.
    """

    def __init__(
        self, lstm: DiagonalBiLSTM, batch_size: int, grid_size: tuple[int, int], bias: torch.Tensor | None = None
    ) -> None:
        u = lstm.hidden_channels
        self.lstm = lstm
        self.left_is = lstm.left_to_right.input_to_state.stepper()
        self.right_is = lstm.right_to_left.input_to_state.stepper()
        # State-to-state matrices (2u, 4u) of the [up | left] states, one per direction.
        self.left_ss = _scan_weight(lstm.left_to_right.state_to_state.weight.detach(), 1)[0]
        self.right_ss = _scan_weight(lstm.right_to_left.state_to_state.weight.detach(), 1)[0]
        context = lstm.context_to_state
        self.context_weight = context.weight.detach().flatten(1) if context is not None else None  # (4u, context)
        self.left_bias, self.right_bias = bias.chunk(2, dim=1) if bias is not None else (None, None)
        like = self.left_is.weight
        self.inputs = PaddedMap.zeros(batch_size, like.shape[1], grid_size, Margin(), like)  # the layer input
        self.h = PaddedMap.zeros(batch_size, u, grid_size, Margin(top=1, left=1), like)  # left-to-right states
        self.c = PaddedMap.zeros(batch_size, u, grid_size, Margin(top=1, left=1), like)
        self.zero = like.new_zeros(batch_size, u)  # the state right of the last column
        self.right = like.new_zeros(batch_size, u, grid_size[1])  # right-to-left states of row i - 1

    def commit_row(self, i: Index, context: PaddedMap | None = None) -> None:
        """Row ``i`` is final: the right-to-left scan over it, read by row ``i + 1``; ``context`` holds row ``i``."""
        self.lstm._check_context(context)
        # Row i's states replace row i - 1's in place (a CUDA graph of the step replays on the tensors it was
        # captured with): column j of row i - 1 is read just before column j of row i is written over it.
        states = self.right  # (b, u, w): the right-to-left states of row i - 1 (zero above the first row), then i
        h = c = self.zero
        for j in reversed(range(self.inputs.size[1])):
            gates = self.right_is.point(self.inputs.at(i, j)) + bias_at(self.right_bias, i, j)
            if context is not None:
                gates = gates + F.linear(context.at(i, j), self.context_weight)
            h, c = _cell(gates, states[:, :, j], h, c, self.right_ss)  # up, then the state right of j
            states[:, :, j] = h

    def __call__(self, x: torch.Tensor, i: Index, j: Index) -> torch.Tensor:
        """Output at ``(i, j)`` from the layer input ``x`` there.

        Shapes:
            x: ``(b, c)`` -> ``(b, u)``
        """
        self.inputs.write(x, i, j)
        gates = self.left_is.point(x) + bias_at(self.left_bias, i, j)
        h, c = _cell(gates, self.h.at(i - 1, j), self.h.at(i, j - 1), self.c.at(i, j - 1), self.left_ss)
        self.h.write(h, i, j)
        self.c.write(c, i, j)
        return h + pick(self.right, 2, j)


def _cell(
    gates: torch.Tensor, up: torch.Tensor, left: torch.Tensor, c_left: torch.Tensor, matrix: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One position of a diagonal scan from its input-to-state gates and its neighbours' states (zero outside).

    Shapes:
        gates: ``(b, (four u))``, up, left, c_left: ``(b, u)``, matrix: ``(2u, 4u)`` -> h, c: ``(b, u)`` each
    """
    return lstm_update(gates + torch.cat([up, left], dim=-1) @ matrix, c_left)
