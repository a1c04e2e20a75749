"""PixelCNN-specific tests: its documented blind spot, its masks, its arguments and golden values.

The invariants every prior shares (causality, normalization, sampling, save/load, input checks) are in
``test_priors.py``; PixelCNN is one of the registered priors there.
"""

from __future__ import annotations

import pytest
import torch

from pixelprior import PixelCNN
from pixelprior.nn import MaskedConv2d
from tests.conftest import dependency_map, random_x, tiny_prior


def visible(model_kwargs: dict, seeds=range(3)) -> torch.Tensor:
    """``(H, W, H, W)`` bool: which positions the parameters at each position depend on (C = 1).

    Union over several initializations: a dead ReLU hides a dependency for one, never the architecture for all.
    """
    seen = 0
    for seed in seeds:
        model = tiny_prior("pixelcnn_mnist", seed=seed, **model_kwargs)
        seen = seen + dependency_map(model, random_x(model, 1, seed=seed))
    H, W = model.grid_size
    return (seen != 0)[0, 0, :, 0, 0].view(H, W, H, W)


def test_blind_spot_geometry():
    """The module docstring's blind spot, pinned down: above and to the right of a pixel, PixelCNN (7x7 mask-A
    input layer, 3x3 blocks) sees (i - r, j + c) exactly when c <= r + 2, however deep it is."""
    H, W = 5, 10
    seen = visible({"sample_size": (H, W), "num_layers": 4})  # depth 4: every row above is within reach
    for i in range(H):
        for j in range(W):
            for i2 in range(i):
                for j2 in range(j, W):
                    r, c = i - i2, j2 - j
                    assert bool(seen[i, j, i2, j2]) == (c <= r + 2), ((i, j), (i2, j2))
            # Never the pixel itself or anything after it.
            assert not seen[i, j].flatten()[i * W + j :].any()
    # E.g. the first pixel of the last row sees the row above up to column 3, not beyond.
    assert seen[H - 1, 0, H - 2, :4].all() and not seen[H - 1, 0, H - 2, 4:].any()


def test_blind_spot_does_not_shrink_with_depth():
    shallow = visible({"sample_size": (4, 8), "num_layers": 2}, seeds=range(2))
    deep = visible({"sample_size": (4, 8), "num_layers": 6}, seeds=range(2))
    # Depth only adds dependencies, and never reaches above-right of the diagonal.
    assert (deep | ~shallow).all()
    assert not deep[3, 0, 2, 4:].any() and not deep[3, 0, 0, 6:].any()


@pytest.mark.parametrize("in_channels", [1, 3])
def test_every_layer_is_masked(in_channels):
    """Every convolution is a masked one (1x1 layers too, for the channel groups); masked taps stay zero after a
    training step."""
    model = tiny_prior("pixelcnn_cifar10", in_channels=in_channels)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(isinstance(m, MaskedConv2d) for m in convs)
    assert model.input_conv.mask_type == "A"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    model.loss(random_x(model, 4)).backward()
    optimizer.step()
    for conv in convs:
        assert (conv.weight[conv.mask.expand_as(conv.weight) == 0] == 0).all()


def test_arguments():
    with pytest.raises(ValueError):
        PixelCNN(kernel_size=4)
    with pytest.raises(ValueError):
        PixelCNN(first_kernel_size=6)
    with pytest.raises(ValueError):
        PixelCNN(in_channels=3, hidden_channels=4)
    with pytest.raises(ValueError):
        PixelCNN(num_layers=-1)
    with pytest.raises(ValueError):
        PixelCNN(num_values=1)
    with pytest.raises(ValueError):
        PixelCNN(sample_size=(4, 0))
    with pytest.raises(ValueError):
        PixelCNN(likelihood="gaussian")
    with pytest.raises(ValueError):
        PixelCNN(num_classes=0)
    model = PixelCNN(sample_size=(3, 5), in_channels=3, num_values=16, hidden_channels=12, num_layers=1)
    assert model.grid_size == (3, 5) and model.distribution.num_params == 3 * 16
    assert model(torch.zeros(1, 3, 3, 5, dtype=torch.long)).shape == (1, 48, 3, 5)


# Golden values: the log-likelihood of a fixed input under a seeded tiny PixelCNN (torch.manual_seed(0) before
# construction, float64). They guard against accidental changes of the architecture, the initialization, the
# parameter layout or the input encoding: a deliberate change updates them (and says so in its note).
GOLDEN = {
    "rgb": (
        dict(sample_size=4, in_channels=3, num_values=4, hidden_channels=12, num_layers=2, head_channels=12),
        lambda: (torch.arange(48) * 7 % 4).view(1, 3, 4, 4),
        -66.98441266105216,
    ),
    "binary": (
        dict(sample_size=5, in_channels=1, num_values=2, hidden_channels=8, num_layers=3),
        lambda: (torch.arange(25) * 3 % 7 % 2).view(1, 1, 5, 5),
        -19.122102693031025,
    ),
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_golden_log_prob(case):
    kwargs, make_x, expected = GOLDEN[case]
    torch.manual_seed(0)
    model = PixelCNN(**kwargs).double().eval()
    assert model.log_prob(make_x()).item() == pytest.approx(expected, abs=1e-6)
