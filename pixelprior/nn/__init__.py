"""Causal building blocks: masks (built only in masks.py), masked, shifted, strided and transposed
convolutions with their cached-sampling steps, the gated residual block of PixelCNN++ and PixelSNAIL, causal
attention, the LSTM layers of PixelRNN, conditioning biases and activations; the step protocol of cached sampling
(stepping.py)."""

from .activations import QuickGELU, concat_elu, quick_gelu
from .attention import KeyValueCache, LocalBlocks, causal_attention, local_attention
from .conditioning import ConditionBias, bias_at, bias_row
from .conv import (
    AnchoredConv2d,
    ConvStep,
    DownRightShiftedConv2d,
    DownShiftedConv2d,
    MaskedConv2d,
    down_shift,
    right_shift,
)
from .gated import GatedResidualBlock, GatedResidualStep, gated_residual, weight_normalized
from .masks import causal_mask, channel_groups, local_causal_mask, spatial_mask
from .recurrent import (
    DiagonalBiLSTM,
    DiagonalBiLSTMStep,
    DiagonalLSTM,
    RowLSTM,
    RowLSTMStep,
    lstm_update,
    skew,
    unskew,
)
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
from .stepping import Margin, PaddedMap, RasterCursor, StepCache, Visit

__all__ = [
    "AnchoredConv2d",
    "ConditionBias",
    "ConvStep",
    "ConvTransposeStep",
    "DiagonalBiLSTM",
    "DiagonalBiLSTMStep",
    "DiagonalLSTM",
    "DownRightShiftedConv2d",
    "DownRightShiftedConvTranspose2d",
    "DownShiftedConv2d",
    "DownShiftedConvTranspose2d",
    "GatedResidualBlock",
    "GatedResidualStep",
    "KeyValueCache",
    "LocalBlocks",
    "Margin",
    "MaskedConv2d",
    "PaddedMap",
    "QuickGELU",
    "RasterCursor",
    "RowLSTM",
    "RowLSTMStep",
    "ShiftedConvTranspose2d",
    "StridedAnchoredConv2d",
    "StridedConvStep",
    "StridedDownRightShiftedConv2d",
    "StepCache",
    "StridedDownShiftedConv2d",
    "Visit",
    "bias_at",
    "bias_row",
    "causal_attention",
    "causal_mask",
    "channel_groups",
    "concat_elu",
    "gated_residual",
    "local_attention",
    "local_causal_mask",
    "quick_gelu",
    "down_shift",
    "lstm_update",
    "right_shift",
    "skew",
    "spatial_mask",
    "unskew",
    "weight_normalized",
]
