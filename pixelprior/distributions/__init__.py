"""Likelihoods over discrete grids and the float <-> bins conversions."""

from .base import Likelihood, uniform
from .categorical import CategoricalLikelihood
from .quantization import binarize, bins_to_images, bins_to_input, images_to_bins

LIKELIHOODS: dict[str, type[Likelihood]] = {"categorical": CategoricalLikelihood}


def get_likelihood(name: str, in_channels: int, num_values: int) -> Likelihood:
    """Build the likelihood called ``name`` (a key of :data:`LIKELIHOODS`)."""
    if name not in LIKELIHOODS:
        raise ValueError(f"Expected likelihood to be one of {sorted(LIKELIHOODS)}, got {name!r}.")
    return LIKELIHOODS[name](in_channels, num_values)


__all__ = [
    "LIKELIHOODS",
    "CategoricalLikelihood",
    "Likelihood",
    "binarize",
    "bins_to_images",
    "bins_to_input",
    "get_likelihood",
    "images_to_bins",
    "uniform",
]
