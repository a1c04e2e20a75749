"""The gated residual block of PixelCNN++ and PixelSNAIL: its formula, weight norm, and its cached steps (pixel, row,
1x1) against the forward, int and tensor positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixelprior.nn import (
    AnchoredConv2d,
    DownRightShiftedConv2d,
    DownShiftedConv2d,
    GatedResidualBlock,
    concat_elu,
    gated_residual,
)

H, W, C = 4, 5, 3


def block(kind: str, nonlinearity: str = "concat_elu", **kw) -> GatedResidualBlock:
    torch.manual_seed(0)
    make = {
        "down": lambda i, o: DownShiftedConv2d(i, o, (2, 3)),
        "down-right": lambda i, o: DownRightShiftedConv2d(i, o, (2, 2)),
        "1x1": lambda i, o: AnchoredConv2d(i, o, 1),
    }[kind]
    return GatedResidualBlock(C, make, nonlinearity=nonlinearity, num_classes=3, cond_channels=2, **kw).double().eval()


def inputs(aux_channels: int = 2):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, C, H, W, generator=gen, dtype=torch.float64)
    aux = torch.randn(2, aux_channels, H, W, generator=gen, dtype=torch.float64)
    cond = torch.randn(2, 2, H, W, generator=gen, dtype=torch.float64)
    return x, aux, torch.tensor([0, 2]), cond


@pytest.mark.parametrize("nonlinearity", ["concat_elu", "elu"])
def test_forward_is_the_gated_residual(nonlinearity):
    b = block("down-right", nonlinearity, hidden_channels=4, aux_channels=2)
    x, aux, labels, cond = inputs()
    f = concat_elu if nonlinearity == "concat_elu" else F.elu
    c = b.conv_in(f(x)) + b.link(f(aux))
    pre = b.conv_out(f(c)) + b.cond_bias(labels, cond)
    a, g = pre.chunk(2, dim=1)
    assert torch.equal(b(x, aux, labels, cond), x + a * torch.sigmoid(g))
    assert torch.equal(gated_residual(x, pre), x + a * torch.sigmoid(g))


def test_weight_norm_and_out_scale():
    plain, normed = block("down"), block("down", weight_norm=True, out_scale=0.1)
    assert hasattr(normed.conv_out, "parametrizations") and not hasattr(plain.conv_out, "parametrizations")
    # Same seed, same draws: the normalized block's conv_out starts at 0.1 of the plain one's weight.
    torch.testing.assert_close(normed.conv_out.weight, 0.1 * plain.conv_out.weight, rtol=1e-6, atol=0)  # float32 g
    with pytest.raises(ValueError, match="nonlinearity"):
        block("down", "relu")


@pytest.mark.parametrize("kind", ["down", "down-right", "1x1"])
@pytest.mark.parametrize("tensor_positions", [False, True], ids=["int", "tensor"])
def test_steps_equal_forward(kind, tensor_positions):
    b = block(kind, hidden_channels=4, aux_channels=2)
    x, aux, labels, cond = inputs()
    full = b(x, aux, labels, cond)
    position = torch.tensor if tensor_positions else int
    step = b.stepper(2, (H, W), labels, cond)
    for i in range(H):
        if kind == "down":  # a down-shifted stream is evaluated a row at a time
            out = step.row(x[:, :, i], position(i), aux[:, :, i])
            torch.testing.assert_close(out, full[:, :, i], rtol=0, atol=1e-12)
            continue
        for j in range(W):
            pi, pj = position(i), position(j)
            args = (x[:, :, i, j], pi, pj, aux[:, :, i, j])
            out = step.point(*args) if kind == "1x1" else step.pixel(*args)
            torch.testing.assert_close(out, full[:, :, i, j], rtol=0, atol=1e-12)
