"""pixelprior: autoregressive image priors (the PixelCNN family) for the Hugging Face stack."""

from .data.palette import ColorPalette
from .models import (
    AutoregressivePrior,
    GatedPixelCNN,
    ImageGPT,
    ImageTransformer,
    MultiScalePrior,
    PixelCNN,
    PixelCNNPlusPlus,
    PixelRNN,
    PixelSNAIL,
    create_prior,
    list_priors,
)
from .pipelines import PixelPriorPipeline, VQPriorPipeline

__version__ = "0.1.0"

__all__ = [
    "AutoregressivePrior",
    "ColorPalette",
    "GatedPixelCNN",
    "ImageGPT",
    "ImageTransformer",
    "MultiScalePrior",
    "PixelCNN",
    "PixelCNNPlusPlus",
    "PixelPriorPipeline",
    "PixelRNN",
    "PixelSNAIL",
    "VQPriorPipeline",
    "create_prior",
    "list_priors",
]
