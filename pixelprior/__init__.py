"""pixelprior: autoregressive image priors (the PixelCNN family) for the Hugging Face stack."""

from .models import (
    AutoregressivePrior,
    GatedPixelCNN,
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
    "PixelCNN",
    "PixelCNNPlusPlus",
    "PixelPriorPipeline",
    "PixelSNAIL",
    "create_prior",
    "list_priors",
]
