"""The per-channel pmfs a lossless coder reads: normalized, telescoping to the joint log_prob, and for the logistic
mixture the exact conditionals p(R), p(G | R), p(B | R, G) of the joint (checked against enumeration)."""

import itertools

import pytest
import torch

from pixelprior.distributions import get_likelihood

CASES = [("categorical", 1, 2), ("categorical", 3, 5), ("logistic_mixture", 1, 256), ("logistic_mixture", 3, 8)]


def likelihood(name, C, K):
    return get_likelihood(name, C, K, **({"num_mixtures": 3} if name == "logistic_mixture" else {}))


@pytest.mark.parametrize("name,C,K", CASES)
def test_channel_pmfs_telescope_to_log_prob(name, C, K):
    torch.manual_seed(0)
    dist = likelihood(name, C, K)
    params = torch.randn(16, dist.num_params, dtype=torch.float64) * 2
    x = torch.randint(0, K, (16, C))
    joint = dist.log_prob(params[:, :, None, None], x[:, :, None, None]).flatten()
    pmfs = [dist.channel_log_pmf(params, x, c) for c in range(C)]
    total = sum(pmf.gather(1, x[:, c : c + 1]).squeeze(1) for c, pmf in enumerate(pmfs))
    torch.testing.assert_close(total, joint, rtol=0, atol=1e-12)
    for pmf in pmfs:
        assert pmf.shape == (16, K) and pmf.dtype == torch.float64
        torch.testing.assert_close(pmf.exp().sum(1), torch.ones(16, dtype=torch.float64), rtol=0, atol=1e-5)


def test_mixture_conditionals_match_enumeration():
    torch.manual_seed(1)
    C, K = 3, 4
    dist = likelihood("logistic_mixture", C, K)
    params = torch.randn(1, dist.num_params, dtype=torch.float64) * 2
    pixels = torch.tensor(list(itertools.product(range(K), repeat=C)))  # (K**3, 3)
    joint = dist.log_prob(params.expand(len(pixels), -1)[:, :, None, None], pixels[:, :, None, None]).exp()
    joint = joint.view(K, K, K)  # p(r, g, b)
    r, g = 2, 1
    values = torch.tensor([[r, g, 0]])
    expected = [joint.sum((1, 2)), joint[r].sum(1) / joint[r].sum(), joint[r, g] / joint[r, g].sum()]
    for c in range(C):
        got = dist.channel_log_pmf(params, values, c).exp()[0]
        torch.testing.assert_close(got, expected[c] / expected[c].sum(), rtol=0, atol=1e-5)


def test_later_channels_are_not_read():
    torch.manual_seed(2)
    dist = likelihood("logistic_mixture", 3, 16)
    params = torch.randn(4, dist.num_params, dtype=torch.float64)
    x = torch.randint(0, 16, (4, 3))
    other = x.clone()
    other[:, 1:] = torch.randint(0, 16, (4, 2))
    assert torch.equal(dist.channel_log_pmf(params, x, 1), dist.channel_log_pmf(params, x[:, [0, 2, 2]], 1))
    assert torch.equal(dist.channel_log_pmf(params, x, 0), dist.channel_log_pmf(params, other, 0))


def test_bad_channel_raises():
    dist = likelihood("logistic_mixture", 3, 8)
    with pytest.raises(ValueError, match=r"channel in \[0, 3\)"):
        dist.channel_log_pmf(torch.zeros(1, dist.num_params), torch.zeros(1, 3, dtype=torch.long), 3)
