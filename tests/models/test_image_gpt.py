"""Image GPT specifics: the sequence layout, the shift, the start token, the step contract and the paper's size.

The invariants every prior shares (causality, normalization, cached == plain, ...) run in ``test_priors.py``.
"""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from pixelprior import ImageGPT, create_prior
from pixelprior.models.registry import prior_config
from tests.conftest import allowed_dependencies, dependency_map


def tiny(C: int = 3, seed: int = 0, **kw) -> ImageGPT:
    torch.manual_seed(seed)
    config = dict(sample_size=4, in_channels=C, num_values=4, hidden_channels=16, num_layers=2, num_heads=2)
    return ImageGPT(**{**config, **kw}).double().eval()


def test_logistic_mixture_is_rejected():
    with pytest.raises(ValueError, match="categorical"):
        ImageGPT(
            sample_size=4, in_channels=3, num_values=4, hidden_channels=8, num_heads=2, likelihood="logistic_mixture"
        )


@pytest.mark.parametrize("kw", [dict(hidden_channels=10, num_heads=4), dict(num_layers=0), dict(dropout=1.0)])
def test_bad_sizes_raise(kw):
    with pytest.raises(ValueError):
        tiny(**kw)


def test_embedding_is_the_lookup_at_integers():
    model = tiny(num_values=5)
    v = torch.arange(5, dtype=torch.float64)
    assert torch.equal(model.embed_values(v), model.token_embedding.weight)


def test_sequence_layout_matches_a_plain_gpt():
    """params[b, c K + k, i, j] are the logits of position (i W + j) C + c of the right-shifted value sequence."""
    model = tiny(C=3, num_classes=2)
    x = torch.randint(0, 4, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        params = model(x, class_labels=labels)
        tokens = rearrange(x, "b c h w -> b (h w c)")
        seq = torch.cat([model.start_embedding(labels)[:, None], model.token_embedding(tokens[:, :-1])], 1)
        seq = seq + model.position_embedding.weight
        for block in model.blocks:
            seq = block(seq)
        logits = model.head(model.norm(seq))  # (b, t, k)
    K = model.num_values
    for i, j, c in [(0, 0, 0), (0, 0, 2), (1, 3, 1), (3, 3, 2)]:
        t = (i * 4 + j) * 3 + c
        torch.testing.assert_close(params[:, c * K : (c + 1) * K, i, j], logits[:, t], rtol=0, atol=1e-12)


@pytest.mark.parametrize("C", [1, 3])
def test_causal_with_dropout_in_train_mode(C):
    model = tiny(C=C, dropout=0.3).train()
    x = torch.randint(0, 4, (2, C, 4, 4), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    dep = dependency_map(model, x)
    assert not ((dep != 0) & ~allowed_dependencies(2, C, C, 16)).any()


def test_start_token_is_the_class():
    model = tiny(C=1, num_classes=3)
    x = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    with torch.no_grad():
        first = [model(x, class_labels=torch.tensor([k]))[0, :, 0, 0] for k in range(3)]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])


def test_step_keeps_earlier_channels_and_checks_order():
    """At the last channel step of a pixel every channel block equals the teacher-forced logits, even on a canvas
    whose later channels changed after their block was computed; steps out of raster order raise."""
    model = tiny(C=3)
    x = torch.randint(0, 4, (2, 3, 4, 4), generator=torch.Generator().manual_seed(2))
    h = model.encode_input(x)
    with torch.no_grad():
        full = model.compute_params(h, None, None)
        cache = model.init_cache(2, None, None)
        canvas = h.clone()
        canvas[:, :, 0, 0] = 0  # not drawn yet
        for c in range(3):
            step = model.step(cache, canvas, 0, 0)
            canvas[:, c, 0, 0] = h[:, c, 0, 0]  # channel c is drawn
        torch.testing.assert_close(step[:, :8], full[:, :8, 0, 0], rtol=1e-9, atol=1e-10)  # channels 0, 1
        with pytest.raises(ValueError, match="raster order"):
            model.step(cache, canvas, 0, 2)


def test_spatial_condition_only_moves_its_pixel_and_later():
    model = tiny(C=1, cond_channels=2)
    x = torch.randint(0, 4, (1, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    cond = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    moved = cond.clone()
    moved[:, :, 2, 1] += 1.0
    with torch.no_grad():
        a, b = model(x, cond=cond).flatten(2), model(x, cond=moved).flatten(2)
    changed = (a != b).any(1)[0]  # (16,)
    assert not changed[:9].any() and changed[9:].all()


def test_image_gpt_s_is_the_papers_76m_model():
    _, config = prior_config("image_gpt_s_cifar10")
    assert (config["num_layers"], config["hidden_channels"], config["num_heads"]) == (24, 512, 8)
    assert (config["sample_size"], config["in_channels"], config["num_values"]) == (32, 1, 512)
    with torch.device("meta"):
        model = create_prior("image_gpt_s_cifar10")
    # 24 blocks of 12 D^2 + 13 D, token, position and start embeddings, final norm and head.
    D, L, T, K = 512, 24, 1024, 512
    expected = L * (12 * D**2 + 13 * D) + K * D + T * D + D + 2 * D + D * K
    assert sum(p.numel() for p in model.parameters()) == expected == 76_707_328


def test_rms_norm_and_quick_gelu_are_openais_formulas():
    """``norm_type="rms_norm"`` is ``x / sqrt(mean(x^2) + eps) * g`` (no mean, no bias) and ``quick_gelu`` is
    ``x * sigmoid(1.702 x)``, in every block and before the head; the defaults stay GPT-2's LayerNorm and GELU."""
    model = tiny(C=1, norm_type="rms_norm", activation="quick_gelu")
    default = tiny(C=1)
    assert isinstance(default.norm, torch.nn.LayerNorm) and isinstance(default.blocks[0].mlp[1], torch.nn.GELU)
    x = 3 * torch.randn(5, 16, dtype=torch.float64)
    with torch.no_grad():
        for norm in (model.norm, model.blocks[0].norm1, model.blocks[1].norm2):
            norm.weight.copy_(torch.rand(16, dtype=torch.float64) + 0.5)
            expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
            torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-14)
        torch.testing.assert_close(model.blocks[0].mlp[1](x), x * torch.sigmoid(1.702 * x), rtol=0, atol=0)
    assert sum(p.numel() for p in default.parameters()) - sum(p.numel() for p in model.parameters()) == 5 * 16


@pytest.mark.parametrize("kw", [dict(norm_type="batch_norm"), dict(activation="relu")])
def test_unknown_norm_or_activation_raises(kw):
    with pytest.raises(ValueError, match="Expected (norm_type|activation) to be one of"):
        tiny(**kw)


@pytest.mark.parametrize(
    "size,width,depth,heads", [("small", 512, 24, 8), ("medium", 1024, 36, 8), ("large", 1536, 48, 16)]
)
def test_openai_sizes_have_transformers_parameter_counts(size, width, depth, heads):
    """image_gpt_{small,medium,large}: the released models' shapes, parameter for parameter (76.7M, 455M, 1.36B)."""
    transformers = pytest.importorskip("transformers")
    _, config = prior_config(f"image_gpt_{size}")
    assert (config["hidden_channels"], config["num_layers"], config["num_heads"]) == (width, depth, heads)
    assert (config["norm_type"], config["activation"], config["num_values"], config["sample_size"]) == (
        "rms_norm", "quick_gelu", 512, 32,
    )  # fmt: skip
    with torch.device("meta"):
        ours = create_prior(f"image_gpt_{size}")
        reference = transformers.ImageGPTForCausalImageModeling(
            transformers.ImageGPTConfig(n_embd=width, n_layer=depth, n_head=heads)  # n_positions 1024, vocab 513
        )
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
