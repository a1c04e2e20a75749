"""The registry: names, overrides, and clear errors."""

import pytest

from pixelprior import AutoregressivePrior, create_prior, list_priors
from pixelprior.models.registry import describe_prior, prior_class, prior_config


def test_list_priors_sorted_and_described():
    names = list_priors()
    assert names == sorted(names) and len(names) >= 4
    for name in names:
        cls, config = prior_config(name)
        assert issubclass(cls, AutoregressivePrior) and prior_class(cls.__name__) is cls
        assert describe_prior(name)
        assert isinstance(config, dict)


def test_overrides_reach_the_config():
    model = create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1)
    assert (model.config.hidden_channels, model.config.num_layers, model.config.num_values) == (8, 1, 2)


def test_unknown_name_or_argument_raises():
    with pytest.raises(ValueError, match="registered prior"):
        create_prior("pixelcnn_imagenet")
    with pytest.raises(ValueError, match=r"unknown \['hiden_channels'\]"):
        create_prior("pixelcnn_mnist", hiden_channels=8)
    with pytest.raises(ValueError, match="model class"):
        prior_class("NotAModel")
