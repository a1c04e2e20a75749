"""Strictly causal multi-head attention over a raster-ordered grid, for training and cached sampling.

Used by PixelSNAIL [1]; the positions of an ``H x W`` grid are flattened in raster order (``p = i W + j``).

[1] X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. PixelSNAIL: An Improved Autoregressive Generative Model.
    ICML 2018. https://arxiv.org/abs/1712.09763

**Strict causality.** The query of position ``p`` attends to the keys of positions ``< p`` only: the key and value
of a position may carry that position's own data (PixelSNAIL feeds the raw input to them), which is unknown when
the position is predicted. Position 0 therefore sees no key at all, and its output is exactly zero. A masked
softmax over such a fully masked row is not: filled with ``-inf`` it is NaN, filled with ``-1e10`` it is uniform
over every position and leaks the whole image into the first pixel.

**How.** Strict causal attention of the queries ``q_1 .. q_{P-1}`` over the keys ``k_0 .. k_{P-2}`` is ordinary
(inclusive) causal attention between the shifted sequences ``q[1:]`` and ``k[:-1], v[:-1]``: query ``a = p - 1``
attends to keys ``0 .. a``. :func:`torch.nn.functional.scaled_dot_product_attention` with ``is_causal=True``
computes it (flash / memory-efficient kernels where available) without any fully masked row, and the zero row of
position 0 is prepended. The key and value of the last position are never read.

Cached sampling (:class:`KeyValueCache`): keys and values are written into preallocated buffers as their
positions become final; the query of position ``p`` reads the first ``p`` entries, ``O(p)`` per step. (A compiled
step, whose position is a tensor, attends over the whole buffer under a mask instead: one graph for every position.)

**Local attention** (the Image Transformer [2]; :class:`LocalBlocks`, :func:`local_attention`): the raster
sequence is split into query blocks, each attending to a memory block around it (``local_1d``: the block and the
``l_m`` positions before it; ``local_2d``: a rectangle of the ``(rows, row length)`` grid extended by a flange
above, left and right), under the causal mask of :func:`pixelprior.nn.masks.local_causal_mask`. The step of cached
sampling attends over the stored keys of the memory positions visible to one query (:meth:`KeyValueCache.attend_at`).

[2] N. Parmar, A. Vaswani, J. Uszkoreit, L. Kaiser, N. Shazeer, A. Ku, D. Tran. Image Transformer. ICML 2018.
    https://arxiv.org/abs/1802.05751

Einops letters: ``b`` batch, ``n`` heads, ``p`` positions in raster order, ``d`` key channels per head, ``e`` value
channels per head; ``g`` query blocks, ``q`` queries per block, ``m`` memory positions per block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .masks import local_causal_mask
from .stepping import Index, pick, put


def _check_heads(channels: int, num_heads: int, name: str) -> None:
    if channels % num_heads:
        raise ValueError(f"Expected {name} divisible by num_heads={num_heads}, got {channels}.")


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int = 1) -> torch.Tensor:
    """Multi-head attention in which position ``p`` attends to positions ``< p``; position 0 outputs zeros.

    Scores are scaled by ``1 / sqrt(d)`` (``d`` the key channels per head).

    Args:
        q: queries.
        k: keys.
        v: values.
        num_heads: ``n``; the key and value channels are split into ``n`` equal heads.

    Shapes:
        q, k: ``(b, p, (n d))``, v: ``(b, p, (n e))`` -> ``(b, p, (n e))``
    """
    _check_heads(q.shape[-1], num_heads, "key channels")
    _check_heads(v.shape[-1], num_heads, "value channels")
    B, P, _ = v.shape
    if P <= 1:
        return v.new_zeros(v.shape)
    q_h = rearrange(q[:, 1:], "b p (n d) -> b n p d", n=num_heads)  # queries of positions 1 .. P-1
    k_h = rearrange(k[:, :-1], "b p (n d) -> b n p d", n=num_heads)  # keys of positions 0 .. P-2
    v_h = rearrange(v[:, :-1], "b p (n e) -> b n p e", n=num_heads)
    out = F.scaled_dot_product_attention(q_h, k_h, v_h, is_causal=True)  # (b, n, P-1, e): query a sees keys <= a
    out = rearrange(out, "b n p e -> b p (n e)")
    return torch.cat([out.new_zeros(B, 1, out.shape[-1]), out], dim=1)  # position 0 sees no key: zeros


class KeyValueCache:
    """Key and value buffers of one attention layer for cached sampling.

    Args:
        batch_size: ``b``.
        length: ``P``, the number of positions.
        key_channels: ``n d``.
        value_channels: ``n e``.
        num_heads: ``n``.
        device: where the buffers live.
        dtype: their dtype.
    """

    def __init__(
        self,
        batch_size: int,
        length: int,
        key_channels: int,
        value_channels: int,
        num_heads: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        _check_heads(key_channels, num_heads, "key channels")
        _check_heads(value_channels, num_heads, "value channels")
        self.num_heads = num_heads
        n = num_heads
        # (b, n, p, d) and (b, n, p, e): heads split once, at write time.
        self.keys = torch.zeros(batch_size, n, length, key_channels // n, device=device, dtype=dtype)
        self.values = torch.zeros(batch_size, n, length, value_channels // n, device=device, dtype=dtype)

    def write(self, index: Index, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the key and value of position ``index``.

        Shapes:
            k: ``(b, (n d))``, v: ``(b, (n e))``
        """
        put(self.keys, 2, index, rearrange(k, "b (n d) -> b n d", n=self.num_heads))
        put(self.values, 2, index, rearrange(v, "b (n e) -> b n e", n=self.num_heads))

    def attend(self, q: torch.Tensor, length: Index) -> torch.Tensor:
        """Attention of one query over the first ``length`` stored positions; zeros when ``length == 0``.

        Shapes:
            q: ``(b, (n d))`` -> ``(b, (n e))``
        """
        B, n, P, e = self.values.shape
        q_h = rearrange(q, "b (n d) -> b n 1 d", n=n)
        if isinstance(length, int):
            if length == 0:
                return q.new_zeros(B, n * e)
            out = F.scaled_dot_product_attention(q_h, self.keys[:, :, :length], self.values[:, :, :length])
        else:  # the whole buffer under a mask; no key at all gives zeros, not a softmax over a fully masked row
            visible = torch.arange(P, device=q.device).view(1, P) < length  # (1, P): the query's row of the mask
            out = F.scaled_dot_product_attention(q_h, self.keys, self.values, attn_mask=visible)
            out = torch.where(length > 0, out, 0.0)
        return rearrange(out, "b n 1 e -> b (n e)")  # out: (b, n, 1, e)

    def attend_at(self, q: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of one query over the stored positions ``positions`` (local attention's visible memory), those
        where ``mask`` is True when it is given (a fixed-size memory block: see :meth:`LocalBlocks.memory_of`).

        Shapes:
            q: ``(b, (n d))``, positions: ``(m,)`` long, mask: ``(m,)`` bool with at least one True -> ``(b, (n e))``
        """
        q_h = rearrange(q, "b (n d) -> b n 1 d", n=self.num_heads)
        keys, values = self.keys[:, :, positions], self.values[:, :, positions]  # (b, n, m, d), (b, n, m, e)
        mask = None if mask is None else mask.view(1, -1)  # the query's row of the mask
        out = F.scaled_dot_product_attention(q_h, keys, values, attn_mask=mask)  # (b, n, 1, e)
        return rearrange(out, "b n 1 e -> b (n e)")


def _pair(value: int | tuple[int, int] | list[int], name: str, minimum: int) -> tuple[int, int]:
    """``n`` -> ``(n, n)``; a pair of ints is checked, each ``>= minimum``."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair)
    ):
        raise ValueError(f"Expected {name} to be an int or a pair of ints >= {minimum}, got {value!r}.")
    return (pair[0], pair[1])


def _positive(value: int, name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"Expected {name} to be an int >= {minimum}, got {value!r}.")
    return value


class LocalBlocks(nn.Module):
    """A raster-ordered sequence split into query blocks, with the memory block and causal mask of each.

    Every position of the sequence is the query of exactly one block; blocks at the end of the sequence (1D) or at
    the bottom and right edges of the grid (2D) are truncated when the block size does not divide the extent, which
    is the same as zero-padding it with masked positions (``-1`` entries below). Build with :meth:`local_1d` or
    :meth:`local_2d`.

    A module only so that its index tensors are (non-persistent) buffers: a model builds its blocks once, they move
    with ``model.to(device)``, and the training step neither rebuilds them nor reads them back to the host (no
    synchronization, nothing for ``torch.compile`` to break on).

    Args:
        query_positions: raster index of each query of each block, ``-1`` for padding.
        memory_positions: raster index of each memory position of each block, ``-1`` for padding; contains the
            block's queries.
        length: ``P``, the sequence length.

    Attributes:
        mask: ``(g, q, m)`` bool, True where a query may attend (:func:`pixelprior.nn.masks.local_causal_mask`).

    Shapes:
        query_positions: ``(g, q)``, memory_positions: ``(g, m)``

    Example:
        >>> blocks = LocalBlocks.local_1d(6, block_length=2, memory_length=1)
        >>> blocks.memory_positions.tolist()
        [[-1, 0, 1], [1, 2, 3], [3, 4, 5]]
        >>> blocks.visible(4).tolist()
        [3, 4]
    """

    query_positions: torch.Tensor
    memory_positions: torch.Tensor
    mask: torch.Tensor
    slots: torch.Tensor

    def __init__(self, query_positions: torch.Tensor, memory_positions: torch.Tensor, length: int) -> None:
        super().__init__()
        self.length = length
        flat = query_positions.flatten()  # (g q)
        real = flat >= 0
        if not torch.equal(flat[real].sort().values, torch.arange(length, device=flat.device)):
            raise ValueError(f"Expected the query blocks to hold each of the {length} positions once.")
        # slots[p]: where position p sits in the flattened (g q) block layout.
        slots = torch.empty(length, dtype=torch.long, device=flat.device)
        slots[flat[real]] = torch.arange(len(flat), device=flat.device)[real]
        self.register_buffer("query_positions", query_positions, persistent=False)
        self.register_buffer("memory_positions", memory_positions, persistent=False)
        self.register_buffer("mask", local_causal_mask(query_positions, memory_positions), persistent=False)
        self.register_buffer("slots", slots, persistent=False)

    def extra_repr(self) -> str:
        g, q = self.query_positions.shape
        return f"length={self.length}, blocks={g}, queries={q}, memory={self.memory_positions.shape[1]}"

    @classmethod
    def local_1d(
        cls, length: int, block_length: int, memory_length: int, device: torch.device | None = None
    ) -> LocalBlocks:
        """Query blocks of ``l_q = block_length`` consecutive positions; each attends to itself and the
        ``l_m = memory_length`` positions before it (causally masked).

        Shapes:
            -> query blocks ``(ceil(P / l_q), l_q)``, memory blocks ``(ceil(P / l_q), l_m + l_q)``
        """
        P = _positive(length, "length", 1)
        lq, lm = _positive(block_length, "block_length", 1), _positive(memory_length, "memory_length", 0)
        g = -(-P // lq)  # number of blocks
        start = torch.arange(g, device=device).view(g, 1) * lq  # (g, 1) first query of each block
        queries = start + torch.arange(lq, device=device)  # (g, q)
        memory = start - lm + torch.arange(lm + lq, device=device)  # (g, m)
        return cls(queries.masked_fill(queries >= P, -1), memory.masked_fill((memory < 0) | (memory >= P), -1), P)

    @classmethod
    def local_2d(
        cls,
        height: int,
        width: int,
        query_shape: int | tuple[int, int],
        memory_flange: int | tuple[int, int],
        device: torch.device | None = None,
    ) -> LocalBlocks:
        """The sequence as a ``height x width`` grid in raster order (position ``r width + x``), split into
        ``h_q x w_q`` query rectangles; each attends to its rectangle extended by ``h_m`` rows above and ``w_m``
        columns left and right (causally masked: the flange right of the queries' own rows, and the rows below a
        query inside its rectangle, are later positions).

        Args:
            height: grid rows ``H``.
            width: grid row length (``W C`` for a ``W``-pixel row of ``C`` channels).
            query_shape: ``(h_q, w_q)``, an int for a square.
            memory_flange: ``(h_m, w_m)``, an int for equal flanges.

        Shapes:
            -> query blocks ``(ceil(H / h_q) ceil(width / w_q), h_q w_q)``, memory blocks
            ``(..., (h_q + h_m) (w_q + 2 w_m))``
        """
        H, Wd = _positive(height, "height", 1), _positive(width, "width", 1)
        hq, wq = _pair(query_shape, "query_shape", 1)
        hm, wm = _pair(memory_flange, "memory_flange", 0)
        rows0 = torch.arange(-(-H // hq), device=device) * hq  # first row of each block row
        cols0 = torch.arange(-(-Wd // wq), device=device) * wq  # first column of each block column

        def positions(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            # rows: (gh, r), cols: (gw, c) -> (gh gw, r c) raster indices, -1 outside the grid
            r = rows.view(-1, 1, rows.shape[1], 1)
            c = cols.view(1, -1, 1, cols.shape[1])
            index = (r * Wd + c).masked_fill((r < 0) | (r >= H) | (c < 0) | (c >= Wd), -1)
            return rearrange(index, "gh gw r c -> (gh gw) (r c)")

        queries = positions(
            rows0[:, None] + torch.arange(hq, device=device), cols0[:, None] + torch.arange(wq, device=device)
        )
        memory = positions(
            rows0[:, None] - hm + torch.arange(hm + hq, device=device),
            cols0[:, None] - wm + torch.arange(wq + 2 * wm, device=device),
        )
        return cls(queries, memory, H * Wd)

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """The query blocks of a sequence (padding slots hold a copy of position 0).

        Shapes:
            x: ``(..., p, d)`` -> ``(..., g, q, d)``
        """
        return x[..., self.query_positions.clamp(min=0), :]

    def memory(self, x: torch.Tensor) -> torch.Tensor:
        """The memory blocks of a sequence (padding slots hold a copy of position 0; the mask hides them).

        Shapes:
            x: ``(..., p, d)`` -> ``(..., g, m, d)``
        """
        return x[..., self.memory_positions.clamp(min=0), :]

    def merge(self, blocks: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`partition`: the sequence back from its query blocks (padding dropped).

        Shapes:
            blocks: ``(..., g, q, d)`` -> ``(..., p, d)``
        """
        return blocks.flatten(-3, -2)[..., self.slots, :]

    def visible(self, position: int) -> torch.Tensor:
        """The positions query ``position`` attends to, ascending (it is among them).

        Shapes:
            -> ``(m',)`` long
        """
        block, slot = divmod(int(self.slots[position]), self.query_positions.shape[1])
        return self.memory_positions[block][self.mask[block, slot]]

    def memory_of(self, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory block of query ``position`` (a 0-d tensor) and which of it the query attends to: the positions of
        :meth:`visible` as a fixed-size block and a mask (no read back to the host: a compiled step's form).

        Shapes:
            -> positions ``(m,)`` long (padding as position 0), mask ``(m,)`` bool
        """
        slot = pick(self.slots, 0, position)
        block, row = slot // self.query_positions.shape[1], slot % self.query_positions.shape[1]
        memory = pick(self.memory_positions, 0, block)  # (m,)
        return memory.clamp(min=0), pick(pick(self.mask, 0, block), 0, row) & (memory >= 0)

    def dense_mask(self) -> torch.Tensor:
        """The whole pattern: ``[t, s]`` is True iff query ``t`` attends to position ``s``.

        Shapes:
            -> ``(p, p)`` bool
        """
        q = self.query_positions.unsqueeze(-1).expand_as(self.mask)
        m = self.memory_positions.unsqueeze(-2).expand_as(self.mask)
        keep = self.mask & (q >= 0) & (m >= 0)
        dense = torch.zeros(self.length, self.length, dtype=torch.bool, device=self.mask.device)
        dense[q[keep], m[keep]] = True
        return dense


def local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    blocks: LocalBlocks,
    num_heads: int = 1,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Multi-head local self-attention: each query attends to the visible positions of its memory block.

    Inclusive (a position attends to itself; its input must not carry its own value: shift the sequence). Scores
    are scaled by ``1 / sqrt(d)``; ``dropout_p`` drops attention weights (pass 0 in eval mode).

    Shapes:
        q, k: ``(b, p, (n d))``, v: ``(b, p, (n e))`` -> ``(b, p, (n e))``
    """
    _check_heads(q.shape[-1], num_heads, "key channels")
    _check_heads(v.shape[-1], num_heads, "value channels")
    q_b = blocks.partition(rearrange(q, "b p (n d) -> b n p d", n=num_heads))  # (b, n, g, q, d)
    k_b = blocks.memory(rearrange(k, "b p (n d) -> b n p d", n=num_heads))  # (b, n, g, m, d)
    v_b = blocks.memory(rearrange(v, "b p (n e) -> b n p e", n=num_heads))  # (b, n, g, m, e)
    out = F.scaled_dot_product_attention(q_b, k_b, v_b, attn_mask=blocks.mask, dropout_p=dropout_p)  # (b,n,g,q,e)
    return rearrange(blocks.merge(out), "b n p e -> b p (n e)")
