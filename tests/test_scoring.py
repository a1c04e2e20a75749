"""Scores: likelihood, likelihood ratio and input complexity agree with their definitions; heatmaps."""

import math

import pytest
import torch

from pixelprior.compression.pixels import png_bits
from pixelprior.scoring import heatmap, score
from tests.conftest import random_x, tiny_prior


def test_scores_follow_their_definitions():
    prior, background = (
        tiny_prior("pixelcnn_mnist", sample_size=6),
        tiny_prior("pixelcnn_mnist", sample_size=6, seed=1),
    )
    x = random_x(prior, 5)
    scores = score(prior, x, background=background, batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(scores.nats, prior.log_prob(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(scores.bits_per_dim, prior.bits_per_dim(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(
            scores.likelihood_ratio, prior.log_prob(x) - background.log_prob(x), rtol=0, atol=1e-12
        )
    torch.testing.assert_close(scores.pixel_bits.flatten(1).sum(1), -scores.nats / math.log(2))
    torch.testing.assert_close(scores.png_bits_per_dim, png_bits(x, 2) / 36)
    torch.testing.assert_close(scores.input_complexity, scores.bits_per_dim - scores.png_bits_per_dim)
    assert score(prior, x).likelihood_ratio is None


def test_background_over_other_grids_is_refused():
    prior = tiny_prior("pixelcnn_mnist")
    with pytest.raises(ValueError, match="background prior over the prior's grids"):
        score(prior, random_x(prior, 1), background=tiny_prior("pixelcnn_mnist", sample_size=3))


def test_heatmap_shows_the_image_beside_its_bits():
    grid = torch.tensor([[[0, 1], [1, 0]]])
    image = heatmap(grid, torch.tensor([[0.0, 1.0], [2.0, 0.5]]), 2, vmax=1.0, scale=2)
    assert image.size == (2 * (2 + 1 + 2), 4)
    assert image.getpixel((0, 0)) == (0, 0, 0) and image.getpixel((2, 0)) == (255, 255, 255)
    assert image.getpixel((8, 0)) == (255, 255, 255)  # 1 bit of a vmax of 1: white
    with pytest.raises(ValueError, match="vmax"):
        heatmap(grid, torch.zeros(2, 2), 2, vmax=0.0)
