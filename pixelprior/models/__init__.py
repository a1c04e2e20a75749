"""The models: the base class, the registry and one file per architecture."""

from .modeling_prior import AutoregressivePrior
from .pixelcnn import PixelCNN
from .registry import create_prior, list_priors, prior_class, register_prior

__all__ = ["AutoregressivePrior", "PixelCNN", "create_prior", "list_priors", "prior_class", "register_prior"]
