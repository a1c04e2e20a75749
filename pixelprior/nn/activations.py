"""Pointwise activations shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, -x])`` over the channel axis: the concatenated ELU of PixelCNN++ (Salimans et al. 2017).

    Pointwise per position, so it is causal wherever its input is.

    Shapes:
        x: ``(b, c, ...)`` -> ``(b, (two c), ...)``
    """
    return F.elu(torch.cat([x, -x], dim=1))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(1.702 x)``: the sigmoid approximation of GELU (Hendrycks & Gimpel 2016) that OpenAI's Image GPT
    uses (transformers' ``quick_gelu``). Pointwise.

    Shapes:
        x: ``(...)`` -> ``(...)``
    """
    return x * torch.sigmoid(1.702 * x)


class QuickGELU(nn.Module):
    """:func:`quick_gelu` as a module (for ``nn.Sequential``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quick_gelu(x)
