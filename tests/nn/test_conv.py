"""Masked and shifted convolutions: functional masking, single-pixel / single-row steps, causality."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixelprior.nn import (
    AnchoredConv2d,
    DownRightShiftedConv2d,
    DownShiftedConv2d,
    MaskedConv2d,
    PaddedMap,
    channel_groups,
    down_shift,
    right_shift,
)
from pixelprior.nn.conv import row_product

H, W = 5, 6


def masked_convs() -> dict[str, MaskedConv2d]:
    """Masked convolutions of every flavour: odd and even kernels, off-centre anchors, channel groups."""
    torch.manual_seed(0)
    rgb6, rgb9 = channel_groups(6, 3), channel_groups(9, 3)
    return {
        "3x3-A": MaskedConv2d(2, 4, 3, "A"),
        "3x3-B": MaskedConv2d(4, 4, 3, "B"),
        "7x7-A-rgb": MaskedConv2d(3, 6, 7, "A", in_groups=torch.arange(3), out_groups=rgb6),
        "5x5-B-rgb-uneven": MaskedConv2d(6, 9, 5, "B", in_groups=rgb6, out_groups=rgb9),
        "1x1-B-rgb": MaskedConv2d(9, 6, 1, "B", in_groups=rgb9, out_groups=rgb6),
        "2x2-B-anchor11": MaskedConv2d(3, 5, 2, "B", anchor=(1, 1)),
        "2x4-A-anchor13": MaskedConv2d(3, 2, (2, 4), "A", anchor=(1, 3)),
        "4x3-B-anchor00": MaskedConv2d(2, 3, (4, 3), "B", anchor=(0, 0), bias=False),
    }


MASKED = list(masked_convs())


def all_convs() -> dict[str, torch.nn.Module]:
    convs: dict[str, torch.nn.Module] = dict(masked_convs())
    torch.manual_seed(1)
    convs["down-2x3"] = DownShiftedConv2d(3, 4, (2, 3))
    convs["down-3x5"] = DownShiftedConv2d(2, 3, (3, 5))
    convs["downright-2x2"] = DownRightShiftedConv2d(3, 4, (2, 2))
    convs["downright-3x2"] = DownRightShiftedConv2d(2, 2, (3, 2))
    convs["anchored-3x3"] = AnchoredConv2d(2, 3, 3)
    return convs


ALL = list(all_convs())


def reference_conv(conv: AnchoredConv2d, x: torch.Tensor) -> torch.Tensor:
    """F.conv2d with the masked weight, zero padding placed so that the anchor tap lies on the output pixel."""
    kh, kw = conv.weight.shape[-2:]
    ai, aj = conv.anchor
    weight = conv.weight if getattr(conv, "mask", None) is None else conv.weight * conv.mask
    return F.conv2d(F.pad(x, (aj, kw - 1 - aj, ai, kh - 1 - ai)), weight, conv.bias)


@pytest.mark.parametrize("name", MASKED)
def test_masked_weights_zero_at_init(name):
    conv = masked_convs()[name]
    mask = conv.mask.expand_as(conv.weight)
    assert (conv.weight[mask == 0] == 0).all()
    assert (conv.weight[mask == 1] != 0).any()


@pytest.mark.parametrize("name", MASKED)
def test_masked_weights_get_zero_gradient(name):
    conv = masked_convs()[name].double()
    x = torch.randn(2, conv.in_channels, H, W, dtype=torch.float64)
    conv(x).square().sum().backward()
    mask = conv.mask.expand_as(conv.weight)
    assert (conv.weight.grad[mask == 0] == 0).all()
    assert (conv.weight.grad[mask == 1] != 0).any()
    # The masked taps stay exactly zero after an optimizer step.
    torch.optim.SGD(conv.parameters(), lr=0.1).step()
    assert (conv.weight[mask == 0] == 0).all()


@pytest.mark.parametrize("name", MASKED)
def test_masked_conv_equals_functional_conv(name):
    conv = masked_convs()[name].double()
    # Put values back in the masked taps: the forward must still ignore them (functional masking).
    with torch.no_grad():
        conv.weight.add_(torch.randn_like(conv.weight))
    x = torch.randn(2, conv.in_channels, H, W, dtype=torch.float64)
    out = conv(x)
    assert out.shape == (2, conv.out_channels, H, W)
    torch.testing.assert_close(out, reference_conv(conv, x), rtol=0, atol=1e-12)
    kh, kw = conv.kernel_size
    if conv.anchor == (kh // 2, kw // 2) and kh % 2 == 1 and kw % 2 == 1:
        expected = F.conv2d(x, conv.weight * conv.mask, conv.bias, padding=(kh // 2, kw // 2))
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def padded(x: torch.Tensor, margin) -> PaddedMap:
    """``x`` in a zero margin, as a sampling buffer holds it."""
    buffer = PaddedMap.zeros(x.shape[0], x.shape[1], tuple(x.shape[-2:]), margin, x)
    buffer.interior.copy_(x)
    return buffer


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tensor_positions", [False, True], ids=["int", "tensor"])
def test_step_equals_full_conv_everywhere(name, tensor_positions):
    """ConvStep at every pixel (borders included) and every row equals the full convolution there, for int
    positions (eager steps) and 0-d tensor positions (compiled steps) alike."""
    conv = all_convs()[name].double()
    x = torch.randn(2, conv.in_channels, H, W, dtype=torch.float64)
    full = conv(x)
    step = conv.stepper()
    buffer = padded(x, step.margin(whole_rows=True))
    position = torch.tensor if tensor_positions else int
    for i in range(H):
        torch.testing.assert_close(step.row(buffer, position(i)), full[:, :, i], rtol=0, atol=1e-12)
        for j in range(W):
            torch.testing.assert_close(step(buffer, position(i), position(j)), full[:, :, i, j], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", MASKED)
def test_masked_step_reads_only_rows_up_to_anchor(name):
    """A pixel step never reads rows below the output pixel (its margin has none): they may hold garbage in a
    sampling buffer."""
    conv = all_convs()[name].double()
    x = torch.randn(2, conv.in_channels, H, W, dtype=torch.float64)
    full = conv(x)
    step = conv.stepper()
    assert step.margin().bottom == 0
    for i in range(H):
        garbage = x.clone()
        garbage[:, :, i + 1 :] = float("nan")
        buffer = padded(garbage, step.margin())
        for j in range(W):
            torch.testing.assert_close(step(buffer, i, j), full[:, :, i, j], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["1x1-B-rgb"])
def test_point_step_equals_1x1_conv(name):
    conv = masked_convs()[name].double()
    x = torch.randn(2, conv.in_channels, H, W, dtype=torch.float64)
    full = conv(x)
    step = conv.stepper()
    for i in range(H):
        for j in range(W):
            torch.testing.assert_close(step.point(x[:, :, i, j]), full[:, :, i, j], rtol=0, atol=1e-12)


def test_point_step_rejects_wide_kernel():
    step = masked_convs()["3x3-B"].stepper()
    with pytest.raises(ValueError):
        step.point(torch.randn(2, 4))


def receptive_field(conv: torch.nn.Module, i: int, j: int, channels: int) -> torch.Tensor:
    """``(H, W)`` bool: which input pixels the output at ``(i, j)`` depends on (exact gradient support)."""
    conv = conv.double()
    x = torch.randn(1, channels, H, W, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(conv(x)[0, :, i, j].sum(), x)
    return grad[0].abs().sum(0) != 0


@pytest.mark.parametrize("kernel", [(2, 3), (3, 5), (1, 3)], ids=lambda k: f"{k[0]}x{k[1]}")
def test_down_shifted_conv_is_causal(kernel):
    torch.manual_seed(0)
    conv = DownShiftedConv2d(2, 3, kernel)
    kh, kw = kernel
    for i in range(H):
        for j in range(W):
            field = receptive_field(conv, i, j, 2)
            assert not field[i + 1 :].any(), "reads a row below the output"
            expected = torch.zeros(H, W, dtype=torch.bool)
            expected[max(i - kh + 1, 0) : i + 1, max(j - kw // 2, 0) : j + kw // 2 + 1] = True
            assert torch.equal(field, expected), (i, j)
            # After a down shift the output at row i only reads rows above it.
            x = torch.randn(1, 2, H, W, dtype=torch.float64, requires_grad=True)
            (grad,) = torch.autograd.grad(down_shift(conv(x))[0, :, i, j].sum(), x)
            assert not grad[0, :, i:].any()
            assert grad[0, :, :i].any() or i == 0


@pytest.mark.parametrize("kernel", [(2, 2), (3, 2), (2, 3)], ids=lambda k: f"{k[0]}x{k[1]}")
def test_down_right_shifted_conv_is_causal(kernel):
    torch.manual_seed(0)
    conv = DownRightShiftedConv2d(2, 3, kernel)
    kh, kw = kernel
    for i in range(H):
        for j in range(W):
            field = receptive_field(conv, i, j, 2)
            assert not field[i + 1 :].any(), "reads a row below the output"
            assert not field[:, j + 1 :].any(), "reads a column right of the output"
            expected = torch.zeros(H, W, dtype=torch.bool)
            expected[max(i - kh + 1, 0) : i + 1, max(j - kw + 1, 0) : j + 1] = True
            assert torch.equal(field, expected), (i, j)


def test_shifts():
    x = torch.arange(2 * H * W, dtype=torch.float64).view(1, 2, H, W)
    down = down_shift(x)
    assert torch.equal(down[:, :, 1:], x[:, :, :-1]) and (down[:, :, 0] == 0).all()
    right = right_shift(x)
    assert torch.equal(right[..., 1:], x[..., :-1]) and (right[..., 0] == 0).all()
    assert torch.equal(down_shift(x, 2)[:, :, 2:], x[:, :, :-2])


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        MaskedConv2d(3, 6, 3, "A", in_groups=torch.arange(2), out_groups=channel_groups(6, 3))
    with pytest.raises(ValueError):
        MaskedConv2d(3, 6, 3, "A", in_groups=torch.arange(3), out_groups=channel_groups(5, 3))
    with pytest.raises(ValueError):
        MaskedConv2d(3, 6, 3, "C")
    with pytest.raises(ValueError):
        DownShiftedConv2d(3, 6, (2, 2))  # even width: no centred column
    with pytest.raises(ValueError):
        AnchoredConv2d(3, 6, 3, mask=torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize("stride", [1, 2])
def test_row_product_is_the_row_convolution(stride):
    """The compiled steps' form of a row convolution (one matrix product over the unfolded strip) equals F.conv2d."""
    gen = torch.Generator().manual_seed(0)
    strip = torch.randn(2, 3, 2, 9, generator=gen, dtype=torch.float64)
    weight, bias = torch.randn(4, 3, 2, 3, generator=gen, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    expected = F.conv2d(strip, weight, bias, stride=(1, stride))[:, :, 0]
    torch.testing.assert_close(row_product(strip, weight, bias, stride), expected, rtol=0, atol=1e-12)
