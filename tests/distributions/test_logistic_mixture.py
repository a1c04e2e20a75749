"""The discretized logistic mixture: layout, normalization, the safe branches, and its sampler."""

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from pixelprior.distributions import LogisticMixtureLikelihood, get_likelihood


def all_pixels(C: int, K: int) -> torch.Tensor:
    """Every pixel of C channels with K values, as (K**C, C, 1, 1) long."""
    return torch.tensor(list(itertools.product(range(K), repeat=C))).view(-1, C, 1, 1)


@pytest.mark.parametrize("C", [1, 2, 3, 4])
@pytest.mark.parametrize("M", [1, 5, 10])
def test_num_params(C, M):
    dist = LogisticMixtureLikelihood(C, 256, num_mixtures=M)
    assert dist.num_params == M * (1 + 2 * C + C * (C - 1) // 2)
    assert dist.param_groups().shape == (dist.num_params,)
    assert dist.channel_steps == (tuple(range(C)),)


def test_known_counts():
    # The counts every PixelCNN++ user knows: 10 per mixture for RGB, 3 for gray.
    assert LogisticMixtureLikelihood(3, 256, 10).num_params == 100
    assert LogisticMixtureLikelihood(1, 256, 10).num_params == 30


@pytest.mark.parametrize("C,K,M", [(1, 2, 2), (1, 4, 3), (1, 256, 5), (2, 16, 2), (3, 4, 2), (3, 8, 3)])
def test_normalized_by_enumeration(C, K, M):
    torch.manual_seed(C * 100 + K)
    dist = get_likelihood("logistic_mixture", C, K, num_mixtures=M)
    xs = all_pixels(C, K)
    for scale in (0.5, 2.0):
        params = (torch.randn(1, dist.num_params, 1, 1, dtype=torch.float64) * scale).expand(len(xs), -1, -1, -1)
        total = dist.log_prob(params, xs).exp().sum().item()
        assert total == pytest.approx(1.0, abs=1e-5)


def test_edge_bins_carry_the_tails():
    # A component centred far beyond the last bin puts (almost) all its mass in the last bin.
    dist = LogisticMixtureLikelihood(1, 16, num_mixtures=1)
    params = torch.tensor([0.0, 5.0, -3.0], dtype=torch.float64).view(1, 3, 1, 1)  # logit, mean, log scale
    lp = dist.log_prob(params.expand(16, -1, -1, -1), all_pixels(1, 16)).flatten()
    assert lp[15].exp().item() == pytest.approx(1.0, abs=1e-6)
    assert lp[0].exp().item() < 1e-6


def test_log_scale_floor_and_mid_bin_fallback_are_finite():
    # A scale far below the floor, centred on bin 128: far bins underflow and take the mid-bin density
    # fallback (finite, no inf or nan); the floor exp(-7) leaves the centre bin a known mass.
    dist = LogisticMixtureLikelihood(1, 256, num_mixtures=1)
    centre = 2 * 128 / 255 - 1
    params = torch.tensor([0.0, centre, -50.0], dtype=torch.float64).view(1, 3, 1, 1)
    lp = dist.log_prob(params.expand(256, -1, -1, -1), all_pixels(1, 256)).flatten()
    assert torch.isfinite(lp).all()
    reach = (1 / 255) * math.exp(7.0)  # half a bin in units of the floored scale
    expected = 1 / (1 + math.exp(-reach)) - 1 / (1 + math.exp(reach))
    assert lp[128].exp().item() == pytest.approx(expected, rel=1e-9)


def test_channels_are_coupled_by_the_coefficients():
    # One component, G's mean follows R through a saturated coefficient: G is most likely where R is.
    dist = LogisticMixtureLikelihood(2, 8, num_mixtures=1)
    # layout: [logit | mu_R, mu_G | logs_R, logs_G | coeff(G<-R)]
    params = torch.tensor([0.0, 0.0, 0.0, -3.0, -3.0, 20.0], dtype=torch.float64).view(1, 6, 1, 1)
    for r in range(8):
        xs = torch.tensor([[r, g] for g in range(8)]).view(8, 2, 1, 1)
        lp = dist.log_prob(params.expand(8, -1, -1, -1), xs).flatten()
        assert lp.argmax().item() == r


@pytest.mark.parametrize("C,K,M", [(1, 4, 3), (3, 2, 2), (2, 4, 2)])
def test_sampler_matches_log_prob(C, K, M):
    torch.manual_seed(7)
    dist = LogisticMixtureLikelihood(C, K, num_mixtures=M)
    params = torch.randn(1, dist.num_params, dtype=torch.float64)
    n = 20000
    draws = dist.sample(
        params.expand(n, -1),
        torch.zeros(n, C, dtype=torch.long),
        dist.channel_steps[0],
        1.0,
        torch.Generator().manual_seed(0),
    )
    assert draws.shape == (n, C) and draws.min() >= 0 and draws.max() < K
    index = (draws * torch.tensor([K ** (C - 1 - c) for c in range(C)])).sum(1)
    observed = torch.bincount(index, minlength=K**C).double()
    probs = dist.log_prob(params.view(1, -1, 1, 1).expand(K**C, -1, -1, -1), all_pixels(C, K)).exp().flatten()
    expected = probs / probs.sum() * n
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3


def test_temperature_sharpens_and_generators_reproduce():
    dist = LogisticMixtureLikelihood(3, 256, num_mixtures=4)
    params = torch.randn(64, dist.num_params, generator=torch.Generator().manual_seed(1))
    x0 = torch.zeros(64, 3, dtype=torch.long)
    a = dist.sample(params, x0, (0, 1, 2), 1.0, torch.Generator().manual_seed(3))
    b = dist.sample(params, x0, (0, 1, 2), 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    gens = [torch.Generator().manual_seed(s) for s in range(64)]
    c = dist.sample(params, x0, (0, 1, 2), 1.0, gens)
    d = dist.sample(params[:1], x0[:1], (0, 1, 2), 1.0, [torch.Generator().manual_seed(0)])
    assert torch.equal(c[:1], d)


def test_temperature_multiplies_the_scale():
    # One gray component with scale 0.1 on the [-1, 1] scale: the spread of the draws shrinks with T.
    dist = LogisticMixtureLikelihood(1, 256, num_mixtures=1)
    params = torch.tensor([[0.0, 0.0, math.log(0.1)]]).expand(4000, -1)
    x0 = torch.zeros(4000, 1, dtype=torch.long)
    hot = dist.sample(params, x0, (0,), 1.0, torch.Generator().manual_seed(3)).float()
    cold = dist.sample(params, x0, (0,), 0.1, torch.Generator().manual_seed(3)).float()
    assert cold.std() < hot.std() / 5
    assert abs(cold.mean().item() - 127.5) < 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_mixtures"):
        LogisticMixtureLikelihood(3, 256, num_mixtures=0)
    with pytest.raises(ValueError, match="likelihood"):
        get_likelihood("gaussian", 1, 256)
    dist = LogisticMixtureLikelihood(3, 256, num_mixtures=2)
    with pytest.raises(ValueError, match="jointly"):
        dist.sample(torch.zeros(1, dist.num_params), torch.zeros(1, 3, dtype=torch.long), (0,), 1.0, None)
