"""PixelRNN and the multi-scale prior: what the generic suite (tests/models/test_priors.py) does not cover.

The skewing of the Diagonal BiLSTM, the Row LSTM's documented triangular receptive field (exactly), bad arguments,
and :class:`~pixelprior.MultiScalePrior`: exact normalization of its two-part likelihood, its sampler, save/load.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from scipy.stats import chisquare

from pixelprior import AutoregressivePrior, MultiScalePrior, PixelRNN, create_prior
from pixelprior.nn import DiagonalBiLSTM, MaskedConv2d, RowLSTM, skew, unskew
from tests.conftest import dependency_map, random_x, tiny_prior

ROW, DIAGONAL = "pixelrnn_row_lstm_mnist", "pixelrnn_diagonal_bilstm_mnist"


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------------- skewing
def test_skew_puts_diagonals_in_columns_and_unskew_inverts_it():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    skewed = skew(x)
    assert skewed.shape == (2, 3, 4, 5 + 4 - 1)
    for r in range(4):
        for d in range(8):
            expected = x[:, :, r, d - r] if 0 <= d - r < 5 else torch.zeros(2, 3, dtype=x.dtype)
            assert torch.equal(skewed[:, :, r, d], expected), (r, d)
    assert torch.equal(unskew(skewed, 5), x)
    # Gradients flow through both (the forward pass trains through them).
    x.requires_grad_()
    unskew(skew(x), 5).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    with pytest.raises(ValueError, match="width"):
        unskew(skewed, 4)


# --------------------------------------------------------------------------------------- receptive fields
def row_lstm_receptive_field(H: int, W: int, num_layers: int, kernel_size: int, first_kernel_size: int):
    """The Row LSTM's receptive field as documented in pixelprior.models.pixelrnn: ``(N, N)`` bool, ``[p, p2]`` True
    when the parameters at position ``p`` depend on the pixel at ``p2`` (one channel)."""
    a, r, L = kernel_size // 2, first_kernel_size // 2, num_layers
    seen = torch.zeros(H * W, H * W, dtype=torch.bool)
    for i in range(H):
        for j in range(W):
            for i2 in range(i + 1):
                d = i - i2
                for j2 in range(W):
                    if d == 0:
                        inside = j - L * a - r <= j2 < j
                    else:
                        inside = j - (L + d) * a - r <= j2 <= j + max((d - 1) * a + r, d * a - 1)
                    seen[i * W + j, i2 * W + j2] = inside
    return seen


@pytest.mark.parametrize(
    "num_layers,kernel_size,first_kernel_size", [(1, 3, 3), (2, 3, 3), (1, 5, 3), (2, 3, 5)], ids=str
)
def test_row_lstm_receptive_field_is_the_documented_triangle(num_layers, kernel_size, first_kernel_size):
    H, W = 5, 9  # wide enough for both the left limits and the above-right blind spot to show
    overrides = dict(
        sample_size=(H, W),
        num_layers=num_layers,
        kernel_size=kernel_size,
        first_kernel_size=first_kernel_size,
        num_classes=None,
        cond_channels=None,
    )
    # Union over initializations: a ReLU of the output layers may be dead for one, not for all.
    seen = 0
    for seed in range(3):
        model = tiny_prior(ROW, seed=seed, **overrides)
        seen = seen + dependency_map(model, random_x(model, 1, seed=seed))[0, 0, :, 0, 0]  # (N, N)
    expected = row_lstm_receptive_field(H, W, num_layers, kernel_size, first_kernel_size)
    wrong = (seen != 0) != expected
    assert not wrong.any(), [(divmod(p, W), divmod(p2, W)) for p, p2 in wrong.nonzero().tolist()[:5]]


def test_diagonal_bilstm_sees_everything_before_in_one_layer():
    """One layer, a 3x3 first convolution, a 5x9 grid: every earlier pixel (the suite checks 4 layers on 4x4)."""
    H, W = 5, 9
    model = tiny_prior(DIAGONAL, sample_size=(H, W), num_layers=1, first_kernel_size=3)
    seen = 0
    for seed in range(2):
        seen = seen + dependency_map(model, random_x(model, 1, seed=seed))[0, 0, :, 0, 0]
    earlier = torch.ones(H * W, H * W, dtype=torch.bool).tril(-1)
    assert torch.equal(seen != 0, earlier)


@pytest.mark.parametrize("reads_data", [False, True], ids=["as-in-the-paper", "reading-the-data"])
def test_diagonal_bilstm_needs_the_data_for_the_last_pixel_of_the_row_above(reads_data):
    """A mask-A convolution and one Diagonal BiLSTM layer: without the data, the right-to-left scan of row 0 never
    reads pixel (0, W - 1), and (1, 0) does not see it (the one-pixel blind spot of the layer as [1] describes it)."""
    torch.manual_seed(0)
    W = 6
    first = MaskedConv2d(1, 4, 3, "A").double()
    lstm = DiagonalBiLSTM(4, 2, context_channels=1 if reads_data else 0).double()
    x = torch.randn(1, 1, 2, W, dtype=torch.float64, requires_grad=True)
    out = lstm(first(x), context=x if reads_data else None)  # (1, 2, 2, W)
    (grad,) = torch.autograd.grad(out[0, :, 1, 0].sum(), x)
    assert (grad[0, 0, 0, : W - 1] != 0).all() and (grad[0, 0, 1] == 0).all()
    assert (grad[0, 0, 0, W - 1] != 0) == reads_data


# ------------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "overrides",
    [
        {"cell": "grid_lstm"},
        {"cell": None},
        {"hidden_channels": 13},  # odd: no h = hidden_channels / 2
        {"in_channels": 3, "hidden_channels": 4},  # h = 2 < 3 channel groups
        {"kernel_size": 2},
        {"first_kernel_size": 0},
        {"num_layers": 0},
        {"head_channels": 2, "in_channels": 3, "hidden_channels": 12},
    ],
    ids=str,
)
def test_bad_arguments_raise(overrides):
    with pytest.raises(ValueError, match="Expected"):
        create_prior(ROW, **overrides)


def test_layers_reject_bad_sizes():
    with pytest.raises(ValueError, match="kernel_size"):
        RowLSTM(8, 4, kernel_size=4)
    with pytest.raises(ValueError, match="hidden_channels"):
        DiagonalBiLSTM(8, 2, num_groups=3)
    with pytest.raises(ValueError, match="context"):
        DiagonalBiLSTM(8, 4, context_channels=1)(torch.randn(1, 8, 3, 3))


def test_registered_configurations():
    for name, cell in ((ROW, "row_lstm"), (DIAGONAL, "diagonal_bilstm")):
        with torch.device("meta"):
            model = create_prior(name)
        assert isinstance(model, PixelRNN) and model.config.cell == cell


def test_cached_sampler_rejects_steps_out_of_order():
    model = tiny_prior(ROW)
    cache = model.init_cache(1, None, None)
    h = model.encode_input(random_x(model, 1))
    model.step(cache, h, 0, 0)
    with pytest.raises(ValueError, match="rows in order"):
        model.step(cache, h, 2, 0)


# ------------------------------------------------------------------------------------------------- multi-scale
def multiscale(name: str, sample_size, small_size, seed: int = 0, **overrides) -> MultiScalePrior:
    torch.manual_seed(seed)
    model = MultiScalePrior.from_registry(
        name, sample_size=sample_size, small_size=small_size, hidden_channels=6, num_layers=1, **overrides
    )
    with torch.no_grad():  # sharper than at initialization, so that the statistical test has power
        for p in model.parameters():
            p.mul_(3.0)
    return model.double().eval()


@pytest.mark.parametrize("name", [ROW, DIAGONAL])
def test_multiscale_likelihood_is_normalized(name):
    """Summing exp(log_prob) over all 256 binary 2x4 images (subsample 1x2) gives 1: the likelihood is exact."""
    model = multiscale(name, (2, 4), (1, 2))
    grids = torch.cartesian_prod(*[torch.arange(2)] * 8).view(-1, 1, 2, 4)
    with torch.no_grad():
        log_prob = model.log_prob(grids)
    assert log_prob.shape == (256,) and (log_prob < 0).all()
    assert abs(log_prob.exp().sum().item() - 1) < 1e-10
    torch.testing.assert_close(model.bits_per_dim(grids), -log_prob / (8 * math.log(2)), rtol=1e-12, atol=0)
    # It is not the big prior's own likelihood: the subsampled pixels are modelled by the small prior.
    cond = model.condition(model.subsample(grids))
    assert not torch.allclose(model.big.log_prob(grids, cond=cond), log_prob)


def test_multiscale_samples_follow_the_likelihood():
    model = multiscale(DIAGONAL, 2, 1, seed=1)  # 2x2 images, the top-left pixel drawn first: 16 outcomes
    grids = torch.cartesian_prod(*[torch.arange(2)] * 4).view(-1, 1, 2, 2)
    with torch.no_grad():
        probs = model.log_prob(grids).exp()
    assert probs.max() > 2 * probs.min()
    samples = model.sample(2000, generator=seeded(0))
    assert samples.shape == (2000, 1, 2, 2) and samples.dtype == torch.long
    index = (samples.flatten(1) * torch.tensor([8, 4, 2, 1])).sum(1)  # lexicographic, as cartesian_prod
    counts = torch.bincount(index, minlength=16).double()
    assert chisquare(counts.numpy(), (probs / probs.sum() * 2000).numpy()).pvalue > 1e-3


@pytest.mark.parametrize("name", [ROW, DIAGONAL])
def test_multiscale_sampling_stages(name):
    model = multiscale(name, (4, 6), (2, 3), num_classes=3)
    labels = torch.tensor([0, 2, 1])
    out = model.sample(class_labels=labels, generator=seeded(4))
    assert out.shape == (3, 1, 4, 6) and ((out >= 0) & (out < 2)).all()
    # The small image is drawn first from the same generator, then kept at the subsample positions.
    small = model.small.sample(class_labels=labels, generator=seeded(4))
    assert torch.equal(model.subsample(out), small)
    assert torch.equal(model.sample(class_labels=labels, generator=seeded(4), use_cache=False), out)
    assert model.log_prob(out, class_labels=labels).shape == (3,)


def test_multiscale_save_load_round_trip(tmp_path):
    model = multiscale(ROW, (4, 4), (2, 2), in_channels=3, num_values=4).float()
    x = torch.randint(0, 4, (2, 3, 4, 4), generator=seeded(0))
    model.save_pretrained(tmp_path)
    files = sorted(os.path.relpath(os.path.join(root, f), tmp_path) for root, _, fs in os.walk(tmp_path) for f in fs)
    assert files == [
        os.path.join("big", "config.json"),
        os.path.join("big", "diffusion_pytorch_model.safetensors"),
        os.path.join("small", "config.json"),
        os.path.join("small", "diffusion_pytorch_model.safetensors"),
    ]
    loaded = MultiScalePrior.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.small, PixelRNN) and isinstance(loaded.big, PixelRNN)
    assert loaded.factors == (2, 2) and loaded.big.config.cond_channels == 3
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    assert torch.equal(loaded.sample(2, generator=seeded(1)), model.sample(2, generator=seeded(1)))


def test_multiscale_rejects_mismatched_priors_and_bad_input():
    small = create_prior(ROW, sample_size=2, hidden_channels=6, num_layers=1)
    big = create_prior(ROW, sample_size=4, hidden_channels=6, num_layers=1, cond_channels=1)
    MultiScalePrior(small, big)  # fits
    bad = {
        "big without condition": (small, create_prior(ROW, sample_size=4, hidden_channels=6, num_layers=1)),
        "small with condition": (big, big),
        "grid not a multiple": (small, create_prior(ROW, sample_size=5, hidden_channels=6, cond_channels=1)),
        "other values": (small, create_prior(ROW, sample_size=4, num_values=4, hidden_channels=6, cond_channels=1)),
        "other classes": (small, create_prior(ROW, sample_size=4, num_classes=2, hidden_channels=6, cond_channels=1)),
        "not a prior": (small, torch.nn.Linear(2, 2)),
    }
    for case, (s, b) in bad.items():
        with pytest.raises(ValueError, match="Expected"):
            MultiScalePrior(s, b)
            pytest.fail(case)
    with pytest.raises(ValueError, match="cond_channels"):
        MultiScalePrior.from_registry(ROW, sample_size=4, small_size=2, cond_channels=1)
    model = MultiScalePrior(small, big)
    for x in (torch.zeros(1, 1, 2, 2, dtype=torch.long), torch.full((1, 1, 4, 4), 2), torch.zeros(1, 1, 4, 4)):
        with pytest.raises(ValueError, match="Expected"):
            model.log_prob(x)
    with pytest.raises(ValueError, match="class_labels"):
        model.log_prob(torch.zeros(1, 1, 4, 4, dtype=torch.long), class_labels=torch.tensor([0]))


def test_multiscale_priors_load_alone(tmp_path):
    """Each saved prior is an ordinary pixelprior model folder."""
    model = multiscale(DIAGONAL, 4, 2)
    model.save_pretrained(tmp_path)
    big = AutoregressivePrior.from_pretrained(tmp_path / "big")
    assert isinstance(big, PixelRNN) and big.grid_size == (4, 4) and big.cond_channels == 1
