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


@pytest.mark.parametrize(
    "name,cell,C,K,layers,width,head",
    [
        ("pixelrnn_row_lstm_mnist", "row_lstm", 1, 2, 7, 32, 32),
        ("pixelrnn_diagonal_bilstm_mnist", "diagonal_bilstm", 1, 2, 7, 32, 32),
        ("pixelrnn_row_lstm_cifar10", "row_lstm", 3, 256, 12, 256, 1024),
        ("pixelrnn_diagonal_bilstm_cifar10", "diagonal_bilstm", 3, 256, 12, 256, 1024),
    ],
)
def test_pixelrnn_follows_the_papers_sizes(name, cell, C, K, layers, width, head):
    # PixelRNN (van den Oord et al. 2016): 7 layers of h = 16 units on MNIST, 12 layers of h = 128 on CIFAR-10 with
    # 1024-wide output layers; a 7x7 mask-A input convolution to 2h maps. The paper gives no parameter counts: count
    # the layers. A Row LSTM layer: 1x2 causal input-to-state (2h -> 4h, the two taps of its 1x3 kernel that mask B
    # keeps) and 1x3 state-to-state (h -> 4h, no bias); a Diagonal BiLSTM layer: per direction 1x1 input-to-state and
    # 2x1 state-to-state, plus a 1x1 data -> 4h input of the right-to-left scan; both then 1x1 h -> 2h, residual.
    _, config = prior_config(name)
    assert (config["cell"], config["in_channels"], config["num_values"]) == (cell, C, K)
    assert (config["num_layers"], config["hidden_channels"]) == (layers, width)
    assert config.get("head_channels", width) == head
    h, P = width // 2, C * K
    if cell == "row_lstm":
        recurrent = (2 * h * 4 * h * 2 + 4 * h) + h * 4 * h * 3
    else:
        recurrent = 2 * ((2 * h * 4 * h + 4 * h) + h * 4 * h * 2) + C * 4 * h
    per_layer = recurrent + (h * 2 * h + 2 * h)
    expected = (C * 2 * h * 49 + 2 * h) + layers * per_layer + (2 * h * head + head) + (head * P + P)
    assert num_params(name) == expected
