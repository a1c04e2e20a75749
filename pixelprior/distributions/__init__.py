"""Likelihoods over discrete grids and the float <-> bins conversions."""

from .base import Likelihood, uniform
from .categorical import CategoricalLikelihood
from .logistic_mixture import LogisticMixtureLikelihood
from .quantization import (
    binarize,
    bins_to_images,
    bins_to_input,
    images_to_bins,
    input_to_bins,
    reduce_bit_depth,
)

LIKELIHOODS: dict[str, type[Likelihood]] = {
    "categorical": CategoricalLikelihood,
    "logistic_mixture": LogisticMixtureLikelihood,
}


def get_likelihood(name: str, in_channels: int, num_values: int, **kwargs) -> Likelihood:
    """Build the likelihood called ``name`` (a key of :data:`LIKELIHOODS`); ``kwargs`` go to its constructor.

    Example:
        >>> get_likelihood("logistic_mixture", in_channels=3, num_values=256, num_mixtures=10).num_params
        100
    """
    if name not in LIKELIHOODS:
        raise ValueError(f"Expected likelihood to be one of {sorted(LIKELIHOODS)}, got {name!r}.")
    return LIKELIHOODS[name](in_channels, num_values, **kwargs)


__all__ = [
    "LIKELIHOODS",
    "CategoricalLikelihood",
    "Likelihood",
    "LogisticMixtureLikelihood",
    "binarize",
    "bins_to_images",
    "bins_to_input",
    "get_likelihood",
    "images_to_bins",
    "input_to_bins",
    "reduce_bit_depth",
    "uniform",
]
