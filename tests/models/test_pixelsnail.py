"""PixelSNAIL-specific tests: checkpoints saved before its gated residual blocks became pixelprior.nn's still load.

The invariants every prior shares are in ``test_priors.py``; PixelSNAIL's registered configurations are among them.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from pixelprior import PixelSNAIL
from pixelprior.models.pixelsnail import LEGACY_BLOCK_NAMES
from tests.conftest import random_x, tiny_prior

NEW_NAMES = {new: old for old, new in LEGACY_BLOCK_NAMES.items()}


def legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as PixelSNAIL saved it before: ``conv1``, ``aux_conv``, ``conv2`` in its gated residual blocks."""
    return {".".join(NEW_NAMES.get(part, part) for part in key.split(".")): value for key, value in state.items()}


def test_legacy_block_names_load(tmp_path):
    # Vertical stream, attention, an output stack and a conditioning stack: every kind of gated residual block.
    model = tiny_prior("pixelsnail_vqvae2_bottom", attention=True, num_output_blocks=1, cond_res_blocks=1)
    cond = torch.randn(2, model.cond_channels, *model.grid_size, dtype=torch.float64)
    x = random_x(model, 2)
    expected = model.log_prob(x, cond=cond)
    old = legacy(model.state_dict())
    assert (
        any(".conv1." in k for k in old) and any(".aux_conv." in k for k in old) and any(".conv2." in k for k in old)
    )
    assert not any(".conv_in." in k or ".link." in k or ".conv_out." in k for k in old)

    fresh = tiny_prior("pixelsnail_vqvae2_bottom", seed=1, attention=True, num_output_blocks=1, cond_res_blocks=1)
    fresh.load_state_dict(old)  # strict: every legacy key renamed, none missing
    assert torch.equal(fresh.log_prob(x, cond=cond), expected)

    model.save_pretrained(tmp_path)
    (weights,) = tmp_path.glob("*.safetensors")
    save_file(legacy(load_file(weights)), weights)
    loaded = PixelSNAIL.from_pretrained(tmp_path, torch_dtype=torch.float64).eval()
    assert torch.equal(loaded.log_prob(x, cond=cond), expected)
