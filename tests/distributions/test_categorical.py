"""Categorical likelihood: layout, normalization, and a sampler that follows the softmax."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from pixelprior.distributions import CategoricalLikelihood, get_likelihood

NUM_DRAWS = 20_000


def draw(dist, logits_row: torch.Tensor, channels, temperature=1.0, seed=0, x=None) -> torch.Tensor:
    """``NUM_DRAWS`` draws of ``channels`` from one position whose parameters are ``logits_row``."""
    params = logits_row.expand(NUM_DRAWS, -1)
    x = torch.zeros(NUM_DRAWS, dist.in_channels, dtype=torch.long) if x is None else x
    return dist.sample(params, x, channels, temperature, torch.Generator().manual_seed(seed))


def assert_follows(samples: torch.Tensor, probs: torch.Tensor) -> None:
    counts = torch.bincount(samples, minlength=len(probs)).double()
    assert len(counts) == len(probs), "sampled a value out of range"
    assert chisquare(counts.numpy(), (probs * len(samples)).numpy()).pvalue > 1e-3


@pytest.mark.parametrize("in_channels,num_values", [(1, 2), (1, 256), (3, 4), (3, 256)])
def test_layout(in_channels, num_values):
    dist = get_likelihood("categorical", in_channels, num_values)
    assert isinstance(dist, CategoricalLikelihood)
    assert dist.num_params == in_channels * num_values
    groups = dist.param_groups()
    assert groups.tolist() == [c for c in range(in_channels) for _ in range(num_values)]
    assert dist.channel_steps == tuple((c,) for c in range(in_channels))


@pytest.mark.parametrize("in_channels,num_values", [(1, 2), (3, 4), (3, 256)])
def test_uniform_logits(in_channels, num_values):
    dist = CategoricalLikelihood(in_channels, num_values)
    params = torch.zeros(2, dist.num_params, 3, 4, dtype=torch.float64)
    x = torch.randint(0, num_values, (2, in_channels, 3, 4))
    logp = dist.log_prob(params, x)
    assert logp.shape == (2, 3, 4)
    torch.testing.assert_close(logp, torch.full_like(logp, -in_channels * math.log(num_values)), rtol=0, atol=1e-12)


def test_log_prob_picks_each_channels_logits():
    # Channel c's logits are maps c*K .. (c+1)*K - 1: a one-hot bump on value v of channel c shows where it lives.
    dist = CategoricalLikelihood(3, 4)
    params = torch.zeros(1, 12, 1, 1, dtype=torch.float64)
    params[0, 1 * 4 + 2] = 10.0  # channel 1 (G), value 2
    x = torch.tensor([0, 2, 0]).view(1, 3, 1, 1)
    y = torch.tensor([0, 1, 0]).view(1, 3, 1, 1)
    assert dist.log_prob(params, x) > dist.log_prob(params, y) + 9


@pytest.mark.parametrize("in_channels,num_values", [(1, 5), (2, 3), (3, 3)])
def test_single_position_is_normalized(in_channels, num_values):
    dist = CategoricalLikelihood(in_channels, num_values)
    params = 3 * torch.randn(1, dist.num_params, 1, 1, dtype=torch.float64)
    values = torch.tensor(list(itertools.product(range(num_values), repeat=in_channels))).view(-1, in_channels, 1, 1)
    total = dist.log_prob(params.expand(len(values), -1, -1, -1), values).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_values", [2, 5, 16])
def test_sample_follows_softmax(num_values):
    dist = CategoricalLikelihood(1, num_values)
    torch.manual_seed(num_values)
    logits = 1.5 * torch.randn(num_values, dtype=torch.float64)
    samples = draw(dist, logits, (0,))
    assert samples.shape == (NUM_DRAWS, 1) and samples.dtype == torch.long
    assert_follows(samples[:, 0], torch.softmax(logits, 0))


def test_sample_fails_on_the_wrong_distribution():
    # The chi-square check can fail: draws from softmax(logits) do not pass as draws from softmax(2 * logits).
    dist = CategoricalLikelihood(1, 4)
    logits = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    counts = torch.bincount(draw(dist, logits, (0,))[:, 0], minlength=4).double()
    assert chisquare(counts.numpy(), (torch.softmax(2 * logits, 0) * NUM_DRAWS).numpy()).pvalue < 1e-6


def test_sample_reads_the_requested_channel():
    dist = CategoricalLikelihood(3, 4)
    torch.manual_seed(0)
    params = torch.randn(12, dtype=torch.float64)
    for c in range(3):
        samples = draw(dist, params, (c,), seed=c)
        assert_follows(samples[:, 0], torch.softmax(params[4 * c : 4 * c + 4], 0))
    joint = draw(dist, params, (0, 2))
    assert joint.shape == (NUM_DRAWS, 2)
    assert_follows(joint[:, 1], torch.softmax(params[8:12], 0))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_rescales_logits(temperature):
    dist = CategoricalLikelihood(1, 4)
    logits = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    samples = draw(dist, logits, (0,), temperature=temperature)[:, 0]
    assert_follows(samples, torch.softmax(logits / temperature, 0))


def test_temperature_sharpens():
    dist = CategoricalLikelihood(1, 4)
    logits = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    mode_freq = [(draw(dist, logits, (0,), temperature=t)[:, 0] == 3).double().mean() for t in (2.0, 1.0, 0.5, 0.1)]
    assert mode_freq[0] < mode_freq[1] < mode_freq[2] < mode_freq[3]
    assert mode_freq[3] > 0.99


def test_extreme_logits_never_leave_the_support():
    dist = CategoricalLikelihood(1, 3)
    logits = torch.tensor([-1e4, 0.0, -1e4], dtype=torch.float64)
    assert (draw(dist, logits, (0,))[:, 0] == 1).all()
    logits = torch.tensor([-1e4, -1e4, 0.0], dtype=torch.float64)
    assert (draw(dist, logits, (0,))[:, 0] == 2).all()
    logits = torch.tensor([0.0, -1e4, -1e4], dtype=torch.float64)
    assert (draw(dist, logits, (0,))[:, 0] == 0).all()


def test_same_generator_seed_same_samples():
    dist = CategoricalLikelihood(1, 8)
    logits = torch.randn(8, dtype=torch.float64)
    assert torch.equal(draw(dist, logits, (0,), seed=3), draw(dist, logits, (0,), seed=3))
    assert not torch.equal(draw(dist, logits, (0,), seed=3), draw(dist, logits, (0,), seed=4))


def test_list_of_generators_is_per_sample():
    dist = CategoricalLikelihood(2, 16)
    torch.manual_seed(0)
    params = torch.randn(3, 32, dtype=torch.float64)
    x = torch.zeros(3, 2, dtype=torch.long)

    def gens(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    together = dist.sample(params, x, (0, 1), generator=gens(10, 11, 12))
    for b, seed in enumerate((10, 11, 12)):
        alone = dist.sample(params[b : b + 1], x[b : b + 1], (0, 1), generator=gens(seed))
        assert torch.equal(together[b : b + 1], alone)
    # Reordering the batch reorders the samples: sample b only depends on generator b.
    swapped = dist.sample(params[[2, 0, 1]], x, (0, 1), generator=gens(12, 10, 11))
    assert torch.equal(swapped, together[[2, 0, 1]])
    with pytest.raises(ValueError):
        dist.sample(params, x, (0, 1), generator=gens(1, 2))


def test_bad_construction_raises():
    with pytest.raises(ValueError):
        CategoricalLikelihood(0, 4)
    with pytest.raises(ValueError):
        CategoricalLikelihood(1, 1)
    with pytest.raises(ValueError):
        get_likelihood("gaussian", 1, 4)
