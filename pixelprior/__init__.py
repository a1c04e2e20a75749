"""pixelprior: autoregressive image priors (the PixelCNN family) for the Hugging Face stack."""

from .models import (
    AutoregressivePrior,
    GatedPixelCNN,
    ImageGPT,
    PixelCNN,
    PixelCNNPlusPlus,
    PixelSNAIL,
    create_prior,
    list_priors,
)
from .pipelines import PixelPriorPipeline

__version__ = "0.1.0"

__all__ = [
    "AutoregressivePrior",
    "GatedPixelCNN",
    "ImageGPT",
    "PixelCNN",
    "PixelCNNPlusPlus",
    "PixelPriorPipeline",
    "PixelSNAIL",
    "create_prior",
    "list_priors",
]
