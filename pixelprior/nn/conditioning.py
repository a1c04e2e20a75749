"""Conditioning biases: a class embedding and a 1x1 projection of a spatial condition map.

Both are fully observed inputs (never generated), so they may be added at every position without any mask:
``bias = embed(class_labels) + proj(cond)``, broadcast over the grid.
"""

from __future__ import annotations

import torch
from torch import nn

from .stepping import Index, pick


class ConditionBias(nn.Module):
    """Per-layer bias from class labels and/or a spatial condition map.

    Args:
        channels: output feature maps.
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int (``cond`` already resized to the grid).

    Shapes:
        class_labels: ``(B,)``, cond: ``(B, cond_channels, H, W)`` -> ``(B, channels, H, W)``,
        ``(B, channels, 1, 1)`` (labels only) or ``None`` (unconditional)
    """

    def __init__(self, channels: int, num_classes: int | None = None, cond_channels: int | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, channels) if num_classes else None
        self.proj = nn.Conv2d(cond_channels, channels, 1) if cond_channels else None

    def forward(self, class_labels: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor | None:
        bias = None
        if self.embed is not None:
            bias = self.embed(class_labels)[:, :, None, None]
        if self.proj is not None:
            spatial = self.proj(cond)
            bias = spatial if bias is None else bias + spatial
        return bias


def bias_at(bias: torch.Tensor | None, i: Index, j: Index) -> torch.Tensor | float:
    """The bias of one position for cached sampling (``0.0`` when unconditional).

    Shapes:
        bias: ``(B, C, H, W)`` or ``(B, C, 1, 1)`` -> ``(B, C)``
    """
    if bias is None:
        return 0.0
    if bias.shape[-2:] == (1, 1):
        return bias[:, :, 0, 0]
    return pick(pick(bias, 2, i), 2, j)


def bias_row(bias: torch.Tensor | None, i: Index) -> torch.Tensor | float:
    """The bias of one row, for layers that cached sampling evaluates a row at a time (``0.0`` when unconditional).

    Shapes:
        bias: ``(B, C, H, W)`` -> ``(B, C, W)``; ``(B, C, 1, 1)`` -> ``(B, C, 1)``
    """
    if bias is None:
        return 0.0
    return bias[:, :, 0] if bias.shape[-2:] == (1, 1) else pick(bias, 2, i)
