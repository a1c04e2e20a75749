"""The registered paper configurations have the papers' sizes.

Built on the meta device: no memory is allocated, so even the 0.9B-parameter VQ-VAE-2 bottom prior is free.
"""

import pytest
import torch

from pixelprior import create_prior, list_priors
from pixelprior.models.registry import prior_config


def num_params(name: str, **overrides) -> int:
    with torch.device("meta"):
        model = create_prior(name, **overrides)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list_priors())
def test_every_registered_config_builds(name):
    assert num_params(name) > 0


def test_pixelcnn_pp_cifar10_is_the_papers_53_7m_model():
    # Counting the layers of the reference implementation (openai/pixel-cnn) with F = 160 filters, 5 resnets per
    # stage, a 4-channel padded input and 100 output maps gives 2092 F^2 + 648 F + 200 parameters, weight-norm
    # gains included: the paper's "53.7M".
    F = 160
    reference = 2092 * F**2 + 648 * F + 200
    assert reference == 53_659_080
    assert num_params("pixelcnn_pp_cifar10") == reference
    assert abs(num_params("pixelcnn_pp_cifar10") - 53.7e6) / 53.7e6 < 0.005
    # Without weight normalization only the 252 F + 100 gains disappear.
    assert num_params("pixelcnn_pp_cifar10", weight_norm=False) == reference - (252 * F + 100)


def test_pixelcnn_pp_cifar10_config():
    _, config = prior_config("pixelcnn_pp_cifar10")
    assert config["hidden_channels"] == 160 and config["num_layers"] == 5 and config["num_mixtures"] == 10
    assert (config["sample_size"], config["in_channels"], config["num_values"]) == (32, 3, 256)


def test_pixelsnail_cifar10_is_the_released_model():
    # The released PixelSNAIL CIFAR-10 model (h12_noup_smallkey) has 46,021,908 parameters, of which 70,368 are
    # weight-norm gains, which pixelprior does not use: the same architecture has 45,951,540.
    assert num_params("pixelsnail_cifar10") == 46_021_908 - 70_368
    _, config = prior_config("pixelsnail_cifar10")
    assert (config["num_layers"], config["num_res_blocks"], config["hidden_channels"]) == (12, 4, 256)


@pytest.mark.parametrize(
    "name,grid,attention",
    [("pixelsnail_vqvae2_top", 32, True), ("pixelsnail_vqvae2_bottom", 64, False)],
)
def test_vqvae2_priors_follow_the_papers_table(name, grid, attention):
    # VQ-VAE-2 (Razavi et al. 2019), appendix: 512 hidden units, 20 residual layers, 5x5 filters, dropout 0.1,
    # 512 codes; attention only in the top prior.
    _, config = prior_config(name)
    assert config["sample_size"] == grid and config["num_values"] == 512 and config["in_channels"] == 1
    assert config["hidden_channels"] == 512 and config["kernel_size"] == 5 and config["dropout"] == 0.1
    assert config["num_layers"] * config["num_res_blocks"] == 20
    assert config.get("attention", True) == attention


def test_gated_pixelcnn_cifar10_width_and_depth():
    _, config = prior_config("gated_pixelcnn_cifar10")
    assert (config["num_layers"], config["hidden_channels"]) == (20, 384)
