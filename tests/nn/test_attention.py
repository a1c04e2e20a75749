"""Strictly causal attention, its key/value cache (int and tensor positions) and the fixed-size local memory."""

from __future__ import annotations

import pytest
import torch

from pixelprior.nn import KeyValueCache, LocalBlocks, causal_attention

B, P, D, E = 2, 7, 8, 6  # batch, positions, key channels, value channels (two heads)


def qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, P, n, generator=gen, dtype=torch.float64) for n in (D, D, E))


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Position p: softmax over the scores of keys 0 .. p - 1, written out; zeros at p = 0."""
    out = torch.zeros(B, P, E, dtype=q.dtype)
    d, e = D // heads, E // heads
    for p in range(1, P):
        for n in range(heads):
            scores = torch.einsum("bd,bsd->bs", q[:, p, n * d : (n + 1) * d], k[:, :p, n * d : (n + 1) * d])
            weights = torch.softmax(scores / d**0.5, dim=-1)  # (b, p)
            out[:, p, n * e : (n + 1) * e] = torch.einsum("bs,bse->be", weights, v[:, :p, n * e : (n + 1) * e])
    return out


@pytest.mark.parametrize("heads", [1, 2])
def test_causal_attention_is_strict_and_exact(heads):
    q, k, v = qkv()
    out = causal_attention(q, k, v, num_heads=heads)
    assert torch.equal(out[:, 0], torch.zeros(B, E, dtype=torch.float64))  # position 0 sees no key
    torch.testing.assert_close(out, reference(q, k, v, heads), rtol=0, atol=1e-12)
    # Position p reads keys and values of positions < p only, of its own sample (exact zeros elsewhere).
    for p in range(P):
        k_, v_ = k.clone().requires_grad_(), v.clone().requires_grad_()
        (gk, gv) = torch.autograd.grad(causal_attention(q, k_, v_, heads)[0, p].sum(), (k_, v_), allow_unused=True)
        for g, reads_from in ((gk, 2), (gv, 1)):  # one key alone gets all the weight: no gradient to it
            assert not g[1].any() and not g[0, p:].any()
            assert p < reads_from or g[0, :p].any()


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("tensor_positions", [False, True], ids=["int", "tensor"])
def test_key_value_cache_replays_causal_attention(heads, tensor_positions):
    q, k, v = qkv(1)
    full = causal_attention(q, k, v, num_heads=heads)
    cache = KeyValueCache(B, P, D, E, heads, torch.device("cpu"), torch.float64)
    position = torch.tensor if tensor_positions else int
    for p in range(P):
        # Query p attends to the p positions written before it (the whole buffer under a mask for a tensor p).
        torch.testing.assert_close(cache.attend(q[:, p], position(p)), full[:, p], rtol=0, atol=1e-12)
        cache.write(position(p), k[:, p], v[:, p])


@pytest.mark.parametrize(
    "blocks", [LocalBlocks.local_1d(10, 3, 2), LocalBlocks.local_2d(3, 5, (2, 2), (1, 1))], ids=["1d", "2d"]
)
def test_fixed_size_memory_attends_like_the_visible_positions(blocks):
    """``memory_of(t)`` (a compiled step's form: a whole memory block and a mask) gives the attention of
    ``visible(t)`` (the positions themselves)."""
    gen = torch.Generator().manual_seed(2)
    cache = KeyValueCache(B, blocks.length, D, E, 2, torch.device("cpu"), torch.float64)
    for t in range(blocks.length):
        cache.write(
            t, torch.randn(B, D, generator=gen, dtype=torch.float64), torch.randn(B, E, generator=gen).double()
        )
    q = torch.randn(B, D, generator=gen, dtype=torch.float64)
    for t in range(blocks.length):
        positions, mask = blocks.memory_of(torch.tensor(t))
        assert torch.equal(positions[mask], blocks.visible(t))
        torch.testing.assert_close(
            cache.attend_at(q, positions, mask), cache.attend_at(q, blocks.visible(t)), rtol=0, atol=1e-12
        )
