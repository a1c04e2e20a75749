"""The LSTM layers of PixelRNN on their own: skewing, the LSTM update, and the cached steps of the Row LSTM and the
Diagonal BiLSTM against their forward (int and tensor positions)."""

from __future__ import annotations

import pytest
import torch

from pixelprior.nn import DiagonalBiLSTM, DiagonalLSTM, PaddedMap, RowLSTM, channel_groups, lstm_update, skew, unskew
from pixelprior.nn.stepping import Margin

H, W = 4, 5


def test_skew_unskew_round_trip():
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    skewed = skew(x)
    assert skewed.shape == (2, 3, H, W + H - 1)
    for i in range(H):  # row i shifted right by i: the diagonals i + j = d are the columns d
        assert torch.equal(skewed[:, :, i, i : i + W], x[:, :, i]) and not skewed[:, :, i, :i].any()
    assert torch.equal(unskew(skewed, W), x)
    with pytest.raises(ValueError, match="skewed map"):
        unskew(x, W)


def test_lstm_update_is_equation_3():
    gates, c_prev = torch.randn(2, 12, 3, dtype=torch.float64), torch.randn(2, 3, 3, dtype=torch.float64)
    o, f, i, g = gates.chunk(4, dim=1)
    h, c = lstm_update(gates, c_prev)
    expected_c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    assert torch.equal(c, expected_c) and torch.equal(h, torch.sigmoid(o) * torch.tanh(expected_c))


def test_diagonal_lstm_reads_the_quadrant_above_left():
    """The left-to-right scan's state at (i, j) depends on the input at (i', j') iff i' <= i and j' <= j."""
    torch.manual_seed(0)
    lstm = DiagonalLSTM(2, 3).double()
    for i in range(H):
        for j in range(W):
            x = torch.randn(1, 2, H, W, dtype=torch.float64, requires_grad=True)
            (grad,) = torch.autograd.grad(lstm(x)[0, :, i, j].sum(), x)
            seen = grad[0].abs().sum(0) != 0
            expected = torch.zeros(H, W, dtype=torch.bool)
            expected[: i + 1, : j + 1] = True
            assert torch.equal(seen, expected), (i, j)


def layers() -> dict[str, torch.nn.Module]:
    torch.manual_seed(1)
    rgb = channel_groups(6, 3)
    return {
        "row": RowLSTM(4, 3, kernel_size=3),
        "row-rgb-k5": RowLSTM(6, 6, kernel_size=5, in_groups=rgb, num_groups=3),
        "diagonal": DiagonalBiLSTM(4, 3),
        "diagonal-rgb-context": DiagonalBiLSTM(6, 6, in_groups=rgb, num_groups=3, context_channels=2),
    }


@pytest.mark.parametrize("name", list(layers()))
@pytest.mark.parametrize("tensor_positions", [False, True], ids=["int", "tensor"])
def test_stepper_equals_forward(name, tensor_positions):
    """Stepped in raster order (``commit_row`` after each row), a layer gives its forward at every position."""
    lstm = layers()[name].double()
    in_channels = 6 if "rgb" in name else 4
    x = torch.randn(2, in_channels, H, W, dtype=torch.float64)
    bias = torch.randn(2, lstm.gate_channels, 1, 1, dtype=torch.float64)
    context = torch.randn(2, 2, H, W, dtype=torch.float64) if "context" in name else None
    full = lstm(x, bias, context) if context is not None else lstm(x, bias)
    step = lstm.stepper(2, (H, W), bias)
    context_map = None
    if context is not None:
        context_map = PaddedMap.zeros(2, 2, (H, W), Margin(), context)
        context_map.interior.copy_(context)
    position = torch.tensor if tensor_positions else int
    for i in range(H):
        for j in range(W):
            out = step(x[:, :, i, j], position(i), position(j))
            torch.testing.assert_close(out, full[:, :, i, j], rtol=0, atol=1e-12)
        step.commit_row(position(i), context_map)
