"""``enable_gradient_checkpointing()`` (diffusers' ModelMixin API) on every registered prior: the same gradients, fewer
activations kept for the backward pass, and ``disable_gradient_checkpointing()`` undoes it."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import PRIOR_NAMES, conditioning, constructor_defaults, random_x, tiny_config, tiny_prior


def gradients_and_saved(prior, x, kwargs) -> tuple[dict[str, torch.Tensor], int]:
    """The loss's gradients and how many tensors autograd kept for the backward pass."""
    prior.zero_grad(set_to_none=True)
    saved = []
    torch.manual_seed(1)  # the same dropout masks in every run; checkpointing replays the RNG when it recomputes
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = prior.loss(x, **kwargs)
    loss.backward()
    return {n: p.grad.clone() for n, p in prior.named_parameters() if p.grad is not None}, len(saved)


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_gradient_checkpointing_gives_the_same_gradients(name):
    cls, _ = tiny_config(name)
    overrides = {"dropout": 0.3} if "dropout" in constructor_defaults(cls) else {}
    prior = tiny_prior(name, **overrides).train()
    x, kwargs = random_x(prior, 2), conditioning(prior, 2)
    with torch.no_grad():
        reference = prior.eval().log_prob(x, **kwargs)
    plain, saved_plain = gradients_and_saved(prior.train(), x, kwargs)
    prior.enable_gradient_checkpointing()
    assert prior.is_gradient_checkpointing
    checkpointed, saved_checkpointed = gradients_and_saved(prior, x, kwargs)
    assert checkpointed.keys() == plain.keys()
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-12, atol=1e-12)
    assert saved_checkpointed < saved_plain, "checkpointing kept as many activations as the plain forward"
    # Without gradients (evaluation, sampling) the blocks run as they are: the same values.
    with torch.no_grad():
        assert torch.equal(prior.eval().log_prob(x, **kwargs), reference)
    prior.train().disable_gradient_checkpointing()
    assert not prior.is_gradient_checkpointing
    again, saved_again = gradients_and_saved(prior, x, kwargs)
    assert saved_again == saved_plain and all(torch.equal(again[k], plain[k]) for k in plain)
