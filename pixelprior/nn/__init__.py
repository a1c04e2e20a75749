"""Causal building blocks: masks (built only in masks.py), masked and shifted convolutions."""

from .conditioning import ConditionBias, bias_at
from .conv import (
    AnchoredConv2d,
    ConvStep,
    DownRightShiftedConv2d,
    DownShiftedConv2d,
    MaskedConv2d,
    down_shift,
    read_patch,
    right_shift,
)
from .masks import causal_mask, channel_groups, spatial_mask

__all__ = [
    "AnchoredConv2d",
    "ConditionBias",
    "ConvStep",
    "DownRightShiftedConv2d",
    "DownShiftedConv2d",
    "MaskedConv2d",
    "bias_at",
    "causal_mask",
    "channel_groups",
    "down_shift",
    "read_patch",
    "right_shift",
    "spatial_mask",
]
