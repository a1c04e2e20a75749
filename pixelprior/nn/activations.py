"""Pointwise activations shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, -x])`` over the channel axis: the concatenated ELU of PixelCNN++ (Salimans et al. 2017).

    Pointwise per position, so it is causal wherever its input is.

    Shapes:
        x: ``(b, c, ...)`` -> ``(b, (two c), ...)``
    """
    return F.elu(torch.cat([x, -x], dim=1))
