"""``log_prob_map``: per-pixel log-likelihood of every registered prior, summing exactly to ``log_prob``."""

import pytest
import torch

from tests.conftest import PRIOR_NAMES, conditioning, random_x, tiny_prior


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_log_prob_map_sums_exactly_to_log_prob(name):
    model = tiny_prior(name, dtype=torch.float32, num_classes=3, cond_channels=2)
    x, kw = random_x(model, 2), conditioning(model, 2)
    with torch.no_grad():
        pixel_map = model.log_prob_map(x, **kw)
        assert pixel_map.shape == (2, *model.grid_size)
        assert torch.equal(pixel_map.flatten(1).sum(1), model.log_prob(x, **kw))  # exactly, not to a tolerance
        assert torch.equal(pixel_map, model.distribution.log_prob(model(x, **kw), x))


def test_log_prob_map_checks_its_inputs():
    model = tiny_prior("pixelcnn_mnist")
    with pytest.raises(ValueError, match="values in"):
        model.log_prob_map(random_x(model, 1) + 5)
    with pytest.raises(ValueError, match="class_labels"):
        model.log_prob_map(random_x(model, 1), class_labels=torch.tensor([0]))
