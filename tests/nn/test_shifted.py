"""Strided and transposed shifted convolutions (PixelCNN++'s resampling): their causal geometry and their cached
steps against the forward, int and tensor positions."""

from __future__ import annotations

import pytest
import torch

from pixelprior.nn import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    PaddedMap,
    ShiftedConvTranspose2d,
    StridedDownRightShiftedConv2d,
    StridedDownShiftedConv2d,
)

H, W = 4, 6  # the fine grid; the coarse one is 2 x 3


def padded(x: torch.Tensor, margin) -> PaddedMap:
    buffer = PaddedMap.zeros(x.shape[0], x.shape[1], tuple(x.shape[-2:]), margin, x)
    buffer.interior.copy_(x)
    return buffer


@pytest.mark.parametrize(
    "strided, stride1",
    [(StridedDownShiftedConv2d, DownShiftedConv2d), (StridedDownRightShiftedConv2d, DownRightShiftedConv2d)],
    ids=["down", "down-right"],
)
def test_strided_conv_is_the_subsampled_stride_1_conv(strided, stride1):
    torch.manual_seed(0)
    conv = strided(3, 4).double()
    plain = stride1(3, 4).double()
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    assert torch.equal(conv(x), plain(x)[:, :, ::2, ::2])


def transposed() -> dict[str, ShiftedConvTranspose2d]:
    torch.manual_seed(1)
    return {
        "down": DownShiftedConvTranspose2d(3, 4),
        "down-right": DownRightShiftedConvTranspose2d(3, 4),
        "3x3-crop1": ShiftedConvTranspose2d(3, 2, (3, 3), crop_left=1),  # parities with unequal tap counts
    }


@pytest.mark.parametrize("name", list(transposed()))
def test_transposed_conv_reads_what_the_module_docstring_says(name):
    """Output (r, c) reads input rows <= r // s; the down-right one only positions (i', j') with 2 i' <= r and
    2 j' <= c; every output reads something."""
    conv = transposed()[name].double()
    h, w = H // 2, W // 2
    for r in range(H):
        for c in range(W):
            x = torch.randn(1, 3, h, w, dtype=torch.float64, requires_grad=True)
            (grad,) = torch.autograd.grad(conv(x)[0, :, r, c].sum(), x)
            seen = grad[0].abs().sum(0) != 0
            assert seen.any() and not seen[r // 2 + 1 :].any()
            if name == "down-right":
                assert not seen[:, c // 2 + 1 :].any()


@pytest.mark.parametrize("name", list(transposed()))
@pytest.mark.parametrize("tensor_positions", [False, True], ids=["int", "tensor"])
def test_transposed_step_equals_forward(name, tensor_positions):
    conv = transposed()[name].double()
    x = torch.randn(2, 3, H // 2, W // 2, dtype=torch.float64)
    full = conv(x)
    step = conv.stepper()
    buffer = padded(x, step.margin().union(step.row_margin()))
    position = torch.tensor if tensor_positions else int
    for r in range(H):
        row = step.row(buffer, position(r), parity=r % 2)
        torch.testing.assert_close(row, full[:, :, r], rtol=0, atol=1e-12)
        for c in range(W):
            torch.testing.assert_close(step(buffer, position(r), position(c)), full[:, :, r, c], rtol=0, atol=1e-12)


@pytest.mark.parametrize("strided", [StridedDownShiftedConv2d, StridedDownRightShiftedConv2d], ids=["down", "dr"])
@pytest.mark.parametrize("tensor_positions", [False, True], ids=["int", "tensor"])
def test_strided_step_equals_forward(strided, tensor_positions):
    torch.manual_seed(2)
    conv = strided(3, 4).double()
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    full = conv(x)
    step = conv.stepper()
    buffer = padded(x, step.margin(whole_rows=True))
    position = torch.tensor if tensor_positions else int
    for i in range(H // 2):
        torch.testing.assert_close(step.row(buffer, position(i)), full[:, :, i], rtol=0, atol=1e-12)
        for j in range(W // 2):
            torch.testing.assert_close(step(buffer, position(i), position(j)), full[:, :, i, j], rtol=0, atol=1e-12)


def test_bad_transposed_arguments_raise():
    with pytest.raises(ValueError, match="stride"):
        ShiftedConvTranspose2d(3, 2, (1, 2), stride=2)
    with pytest.raises(ValueError, match="odd kernel width"):
        DownShiftedConvTranspose2d(3, 2, (2, 2))
