"""The models: the base class, the registry and one file per architecture."""

from .gated_pixelcnn import GatedPixelCNN
from .image_gpt import ImageGPT
from .image_transformer import ImageTransformer
from .modeling_prior import AutoregressivePrior
from .multiscale import MultiScalePrior
from .pixelcnn import PixelCNN
from .pixelcnn_pp import PixelCNNPlusPlus
from .pixelrnn import PixelRNN
from .pixelsnail import PixelSNAIL
from .registry import create_prior, list_priors, prior_class, register_prior

__all__ = [
    "AutoregressivePrior",
    "GatedPixelCNN",
    "ImageGPT",
    "ImageTransformer",
    "MultiScalePrior",
    "PixelCNN",
    "PixelCNNPlusPlus",
    "PixelRNN",
    "PixelSNAIL",
    "create_prior",
    "list_priors",
    "prior_class",
    "register_prior",
]
