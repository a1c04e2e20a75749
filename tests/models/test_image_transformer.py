"""Image Transformer specifics: the local attention masks, the block partition, the receptive field, bad arguments
and the paper's size.

The invariants every prior shares (causality, normalization, cached == plain, the documented blind spot, ...) run
in ``test_priors.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from pixelprior import ImageTransformer
from pixelprior.models.registry import prior_config
from pixelprior.nn.attention import LocalBlocks, local_attention
from tests.conftest import allowed_dependencies, dependency_map
from tests.models.test_paper_sizes import num_params


def tiny(C: int = 1, seed: int = 0, **kw) -> ImageTransformer:
    torch.manual_seed(seed)
    config = dict(
        sample_size=4, in_channels=C, num_values=4, hidden_channels=12, num_layers=1, num_heads=2, ffn_channels=24
    )
    return ImageTransformer(**{**config, **kw}).double().eval()


# ------------------------------------------------------------------------------------------- reference masks
def reference_1d(length: int, lq: int, lm: int) -> torch.Tensor:
    """Query t sees s iff s <= t and s is at most lm positions before t's block: written position by position."""
    ref = torch.zeros(length, length, dtype=torch.bool)
    for t in range(length):
        start = (t // lq) * lq
        for s in range(length):
            ref[t, s] = start - lm <= s <= t
    return ref


def reference_2d(H: int, Wd: int, query: tuple[int, int], flange: tuple[int, int]) -> torch.Tensor:
    """Query (r, x) sees (r2, x2) iff it is not later in raster order and lies in the query rectangle of (r, x)
    extended by hm rows above and wm columns left and right."""
    (hq, wq), (hm, wm) = query, flange
    ref = torch.zeros(H * Wd, H * Wd, dtype=torch.bool)
    for r in range(H):
        for x in range(Wd):
            r0, x0 = (r // hq) * hq, (x // wq) * wq
            for r2 in range(H):
                for x2 in range(Wd):
                    inside = r0 - hm <= r2 < r0 + hq and x0 - wm <= x2 < x0 + wq + wm
                    ref[r * Wd + x, r2 * Wd + x2] = inside and r2 * Wd + x2 <= r * Wd + x
    return ref


CASES_1D = [(16, 4, 4), (16, 4, 0), (10, 3, 2), (7, 8, 3), (12, 1, 1), (48, 5, 7)]
CASES_2D = [
    (4, 4, (2, 2), (1, 1)),
    (4, 12, (2, 3), (1, 2)),
    (3, 5, (2, 2), (0, 1)),  # blocks do not divide: truncated at the bottom and right
    (5, 7, (3, 4), (2, 0)),
    (4, 4, (1, 1), (0, 0)),
]


@pytest.mark.parametrize("length,lq,lm", CASES_1D)
def test_local_1d_mask_is_exactly_the_window(length, lq, lm):
    blocks = LocalBlocks.local_1d(length, lq, lm)
    assert torch.equal(blocks.dense_mask(), reference_1d(length, lq, lm))
    assert blocks.memory_positions.shape == (-(-length // lq), lm + lq)


@pytest.mark.parametrize("H,Wd,query,flange", CASES_2D)
def test_local_2d_mask_is_exactly_the_window(H, Wd, query, flange):
    blocks = LocalBlocks.local_2d(H, Wd, query, flange)
    assert torch.equal(blocks.dense_mask(), reference_2d(H, Wd, query, flange))
    (hq, wq), (hm, wm) = query, flange
    assert blocks.memory_positions.shape[1] == (hq + hm) * (wq + 2 * wm)


def test_local_2d_example():
    # 4x4 grid, 2x2 query blocks, 1-row / 1-column flange: position (3, 0) sees row 1 and row 2 up to column 2
    # (the flange), (3, 0) itself, nothing of row 3 after it and not (2, 3).
    dense = LocalBlocks.local_2d(4, 4, 2, 1).dense_mask()
    seen = dense[12].view(4, 4)
    expected = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(seen, expected)


@pytest.mark.parametrize(
    "blocks",
    [LocalBlocks.local_1d(*c) for c in CASES_1D] + [LocalBlocks.local_2d(*c) for c in CASES_2D],
    ids=[f"1d-{c}" for c in CASES_1D] + [f"2d-{c[:2]}-{c[2]}-{c[3]}" for c in CASES_2D],
)
def test_partition_round_trip_and_visible(blocks):
    P = blocks.length
    x = torch.randn(2, 3, P, 5)
    parts = blocks.partition(x)  # (2, 3, g, q, 5)
    assert parts.shape == (2, 3, *blocks.query_positions.shape, 5)
    assert torch.equal(blocks.merge(parts), x)
    real = blocks.query_positions >= 0
    assert torch.equal(parts[:, :, real], x[:, :, blocks.query_positions[real]])
    memory, real = blocks.memory(x), blocks.memory_positions >= 0
    assert torch.equal(memory[:, :, real], x[:, :, blocks.memory_positions[real]])
    dense = blocks.dense_mask()
    for t in range(P):
        assert torch.equal(blocks.visible(t), dense[t].nonzero()[:, 0])


@pytest.mark.parametrize("blocks", [LocalBlocks.local_1d(10, 3, 2), LocalBlocks.local_2d(3, 5, (2, 2), (1, 1))])
def test_local_attention_equals_dense_masked_attention(blocks):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, blocks.length, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    out = local_attention(q, k, v, blocks, num_heads=2)
    heads = [rearrange(a, "b p (n d) -> b n p d", n=2) for a in (q, k, v)]
    ref = F.scaled_dot_product_attention(*heads, attn_mask=blocks.dense_mask())
    torch.testing.assert_close(out, rearrange(ref, "b n p d -> b p (n d)"), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        dict(block_length=0),
        dict(block_length=2.0),
        dict(memory_length=-1),
        dict(attention="local_2d", query_shape=(0, 2)),
        dict(attention="local_2d", query_shape=(2, 2, 2)),
        dict(attention="local_2d", memory_flange=(-1, 1)),
        dict(attention="local_2d", memory_flange="1"),
        dict(attention="global"),
        dict(position_encoding="rope"),
        dict(hidden_channels=10, num_heads=2),  # sinusoidal positions need a multiple of 4
        dict(hidden_channels=12, num_heads=5),
        dict(num_layers=0),
        dict(ffn_channels=0),
        dict(dropout=1.0),
        dict(likelihood="logistic_mixture"),
    ],
)
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        tiny(**kw)


def test_block_sizes_that_do_not_divide_are_truncated():
    # 4x4x3 = 48 positions in blocks of 5; a 4x12 grid in 3x5 rectangles: the last blocks are partial.
    for kw in (dict(block_length=5, memory_length=3), dict(attention="local_2d", query_shape=(3, 5))):
        model = tiny(C=3, **kw)
        x = torch.randint(0, 4, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(model.log_prob(x)).all()


# ------------------------------------------------------------------------------------------- the model's pattern
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize(
    "kw",
    [dict(block_length=4, memory_length=3), dict(attention="local_2d", query_shape=(2, 3), memory_flange=(1, 2))],
    ids=["local_1d", "local_2d"],
)
def test_one_layer_sees_exactly_its_memory(C, kw):
    """With one layer, position t depends on value s iff t attends to position s + 1 (which carries value s)."""
    model = tiny(C=C, num_layers=1, **kw)
    x = torch.randint(0, 4, (1, C, 4, 4), generator=torch.Generator().manual_seed(1))
    dep = dependency_map(model, x)[0, :, :, 0]  # (G, pixels, C, pixels)
    seen = rearrange(dep, "g p c p2 -> (p g) (p2 c)") != 0  # (T, T): position t, value s
    dense = model.local_blocks.dense_mask()
    expected = torch.zeros_like(seen)
    expected[:, :-1] = dense[:, 1:]  # value s is the input of position s + 1
    assert torch.equal(seen, expected)


def test_local_1d_deep_enough_has_no_blind_spot():
    # 16 positions, l_m = 4: 4 layers reach >= 16 positions back, so every earlier position is seen.
    model = tiny(C=1, num_layers=4, block_length=4, memory_length=4)
    x = torch.randint(0, 4, (1, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    seen = dependency_map(model, x) != 0
    assert torch.equal(seen, allowed_dependencies(1, 1, 1, 16))


def test_local_2d_narrow_memory_never_sees_the_end_of_the_previous_row():
    # (3, 0) with 2x2 blocks and a 1-column flange: value (2, 2) is the input of position (2, 3), which is outside
    # its memory and only in the memory of later positions: missing however deep the model.
    model = tiny(C=1, num_layers=4, attention="local_2d", query_shape=2, memory_flange=1)
    x = torch.randint(0, 4, (1, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    dep = dependency_map(model, x)[0, 0, 12, 0, 0].view(4, 4)  # position (3, 0) on every value
    assert dep[2, 2] == 0 and dep[2, 3] != 0 and dep[0, 0] != 0 and dep[3, 0] == 0


@pytest.mark.parametrize(
    "kw",
    [dict(position_encoding="learned"), dict(norm_first=True, num_classes=3, cond_channels=2)],
    ids=["learned", "prenorm-cond"],
)
def test_step_equals_compute_params_other_variants(kw):
    model = tiny(C=3, num_layers=2, block_length=5, memory_length=2, **kw)
    gen = torch.Generator().manual_seed(4)
    x = torch.randint(0, 4, (2, 3, 4, 4), generator=gen)
    labels, cond = model.check_conditioning(
        2,
        torch.tensor([0, 2]) if model.num_classes else None,
        torch.randn(2, 2, 4, 4, generator=gen, dtype=torch.float64) if model.cond_channels else None,
    )
    h = model.encode_input(x)
    with torch.no_grad():
        full = model.compute_params(h, labels, cond)
        cache = model.init_cache(2, labels, cond)
        for i in range(4):
            for j in range(4):
                for _ in range(3):
                    torch.testing.assert_close(model.step(cache, h, i, j), full[:, :, i, j], rtol=1e-9, atol=1e-10)
    dep = dependency_map(model.train(), x, labels, cond)
    assert not ((dep != 0) & ~allowed_dependencies(2, 3, 3, 16)).any()


def test_position_encoding_tells_positions_apart():
    for encoding in ("sinusoidal", "learned"):
        pe = tiny(C=3, position_encoding=encoding).position_encoding()
        assert pe.shape == (48, 12) and len(torch.unique(pe, dim=0)) == 48


# ------------------------------------------------------------------------------------------------- paper size
def test_image_transformer_cifar10_is_the_papers_best_model():
    # tensor2tensor imagetransformer_cifar10_base (2.90 bits/dim): d = 512, 12 layers, 4 heads, feed-forward 2048,
    # 1D local attention over 256-position blocks with 256 positions of memory, dropout 0.3. Parameters: a 256 x d
    # embedding per channel, per layer 4 d^2 attention projections (no biases), the feed-forward network and two
    # LayerNorms, and the d -> 256 head.
    d, f, L = 512, 2048, 12
    expected = 3 * 256 * d + L * (4 * d * d + (d * f + f) + (f * d + d) + 4 * d) + (d * 256 + 256)
    assert expected == 38_328_576
    assert num_params("image_transformer_cifar10") == expected
    _, config = prior_config("image_transformer_cifar10")
    assert (config["sample_size"], config["in_channels"], config["num_values"]) == (32, 3, 256)
    assert (config["attention"], config["block_length"], config["memory_length"]) == ("local_1d", 256, 256)
    assert config["dropout"] == 0.3 and config.get("norm_first", False) is False
