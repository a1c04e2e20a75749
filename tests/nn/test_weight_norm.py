"""pixelprior.nn.weight_norm: torch's weight-norm parametrization (values, gradients, state dicts), one call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelprior.nn.weight_norm import weight_norm

LAYERS = {
    "conv": (lambda: nn.Conv2d(3, 4, (2, 3)), 0),
    "conv_transpose": (lambda: nn.ConvTranspose2d(3, 5, (2, 2), stride=2), 1),
    "linear": (lambda: nn.Linear(6, 2), 0),
}


def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    """The same layer weight-normalized by torch and by pixelprior, with equal parameters, in float64."""
    make, dim = LAYERS[name]
    torch.manual_seed(0)
    ours = weight_norm(make().double(), dim=dim)
    torch.manual_seed(0)
    theirs = nn.utils.parametrizations.weight_norm(make().double(), dim=dim)
    with torch.no_grad():
        ours.parametrizations.weight.original0.mul_(torch.rand_like(ours.parametrizations.weight.original0) + 0.5)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("name", list(LAYERS))
def test_same_weight_gradients_and_state_dict_as_torch(name):
    ours, theirs = _pair(name)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "parametrizations.weight.original0" in ours.state_dict()  # g; original1 is v
    x = torch.randn(2, *((3, 4, 5) if name != "linear" else (6,)), dtype=torch.float64)
    assert torch.equal(ours.weight, theirs.weight)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for (key, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-12), key


def test_assignment_sets_g_and_v_and_removal_keeps_the_weight():
    ours, _ = _pair("conv")
    w = torch.randn_like(ours.weight)
    ours.weight = w  # the right inverse: v = w, g = ||w|| per output map
    assert torch.allclose(ours.weight, w, atol=1e-12)
    assert torch.allclose(ours.parametrizations.weight.original1, w, atol=0)
    assert torch.allclose(ours.parametrizations.weight.original0, w.flatten(1).norm(dim=1)[:, None, None, None])
    nn.utils.parametrize.remove_parametrizations(ours, "weight", leave_parametrized=True)
    assert type(ours) is nn.Conv2d and torch.allclose(ours.weight, w, atol=1e-12)


def test_other_modules_of_the_class_are_untouched():
    ours, theirs = _pair("conv")
    assert type(ours) is not type(theirs) and type(ours).weight is not type(theirs).weight
    plain = nn.Conv2d(3, 4, (2, 3))
    assert isinstance(plain.weight, nn.Parameter)
