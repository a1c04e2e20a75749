"""Causal building blocks: masks (built only in masks.py), masked, shifted, strided and transposed
convolutions with their cached-sampling steps, causal attention, conditioning biases and activations."""

from .activations import concat_elu
from .attention import KeyValueCache, causal_attention
from .conditioning import ConditionBias, bias_at, bias_row
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
from .shifted import (
    ConvTransposeStep,
    DownRightShiftedConvTranspose2d,
    DownShiftedConvTranspose2d,
    ShiftedConvTranspose2d,
    StridedAnchoredConv2d,
    StridedConvStep,
    StridedDownRightShiftedConv2d,
    StridedDownShiftedConv2d,
)

__all__ = [
    "AnchoredConv2d",
    "ConditionBias",
    "ConvStep",
    "ConvTransposeStep",
    "DownRightShiftedConv2d",
    "DownRightShiftedConvTranspose2d",
    "DownShiftedConv2d",
    "DownShiftedConvTranspose2d",
    "KeyValueCache",
    "MaskedConv2d",
    "ShiftedConvTranspose2d",
    "StridedAnchoredConv2d",
    "StridedConvStep",
    "StridedDownRightShiftedConv2d",
    "StridedDownShiftedConv2d",
    "bias_at",
    "bias_row",
    "causal_attention",
    "causal_mask",
    "channel_groups",
    "concat_elu",
    "down_shift",
    "read_patch",
    "right_shift",
    "spatial_mask",
]
