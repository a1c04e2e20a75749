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
positions become final; the query of position ``p`` reads the first ``p`` entries, ``O(p)`` per step.

Einops letters: ``b`` batch, ``n`` heads, ``p`` positions in raster order, ``d`` key channels per head, ``e`` value
channels per head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


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

    def write(self, index: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the key and value of position ``index``.

        Shapes:
            k: ``(b, (n d))``, v: ``(b, (n e))``
        """
        self.keys[:, :, index] = rearrange(k, "b (n d) -> b n d", n=self.num_heads)
        self.values[:, :, index] = rearrange(v, "b (n e) -> b n e", n=self.num_heads)

    def attend(self, q: torch.Tensor, length: int) -> torch.Tensor:
        """Attention of one query over the first ``length`` stored positions; zeros when ``length == 0``.

        Shapes:
            q: ``(b, (n d))`` -> ``(b, (n e))``
        """
        B, n, _, e = self.values.shape
        if length == 0:
            return q.new_zeros(B, n * e)
        q_h = rearrange(q, "b (n d) -> b n 1 d", n=n)
        out = F.scaled_dot_product_attention(q_h, self.keys[:, :, :length], self.values[:, :, :length])  # (b, n, 1, e)
        return rearrange(out, "b n 1 e -> b (n e)")
