"""Image Transformer [1]: a decoder of local self-attention layers over the raster sequence of pixel channels.

[1] N. Parmar, A. Vaswani, J. Uszkoreit, L. Kaiser, N. Shazeer, A. Ku, D. Tran. Image Transformer. ICML 2018.
    https://arxiv.org/abs/1802.05751 (reference implementation: tensor2tensor's ``imagetransformer``)

**The sequence.** As in :mod:`pixelprior.models.image_gpt`, a ``(C, H, W)`` grid of values is a sequence of
``T = H W C`` positions in raster order, the channels of a pixel consecutive (R -> G -> B): channel ``c`` of pixel
``(i, j)`` is position ``t = i (W C) + j C + c``, i.e. row ``i`` and column ``x = j C + c`` of an ``H x (W C)`` grid.

Architecture (``D = hidden_channels``):

* **input**: position ``t`` reads the embedding of value ``t - 1`` (zeros at ``t = 0``: the sequence is shifted
  right, so a position never sees its own value). Each channel has its own ``K x D`` embedding table ([1]: "a
  256 x d embedding for each channel"); plus a position encoding of the row (``D / 2`` dimensions) and of the
  column-and-channel index ``x`` (the other ``D / 2``), sinusoidal ([1]'s "timing" signal) or learned; plus a learned
  class embedding (``num_classes``) and a 1x1 projection of the spatial condition at the position's pixel
  (``cond_channels``, :class:`pixelprior.nn.ConditionBias`), both added to every position as [1] adds its class;
* ``num_layers`` **blocks** of local multi-head self-attention and a ReLU feed-forward network (``ffn_channels``),
  each sublayer with dropout and a residual connection, post-norm (``LN(x + dropout(f(x)))``, [1]'s best CIFAR-10
  model) or pre-norm (``x + dropout(f(LN(x)))`` and a final LayerNorm; ``norm_first=True``);
* a linear head to the ``K`` logits of each position: a categorical softmax per channel, laid out as the
  categorical likelihood expects (``(B, C K, H, W)``).

**Local attention** (:class:`pixelprior.nn.attention.LocalBlocks`): the sequence is split into non-overlapping query
blocks; every position of a block attends to the positions of its memory block that are not later than itself.

* ``attention="local_1d"``: blocks of ``l_q = block_length`` consecutive positions; the memory is the block and the
  ``l_m = memory_length`` positions before it;
* ``attention="local_2d"``: ``query_shape = (h_q, w_q)`` rectangles of the ``H x (W C)`` grid; the memory extends
  the rectangle by ``memory_flange = (h_m, w_m)``: ``h_m`` rows above, ``w_m`` columns left and right.

Blocks that do not divide the sequence (1D) or the grid (2D) are truncated at the end / the bottom and right edges,
which equals [1]'s zero-padding with the padding masked out. Attention is computed block by block
(:func:`pixelprior.nn.attention.local_attention`, ``scaled_dot_product_attention`` with the block masks of
:func:`pixelprior.nn.masks.local_causal_mask`): ``O(T (l_q + l_m))`` instead of ``O(T^2)``.

**Receptive field.** Causality is exact: position ``t`` depends on values ``< t`` only. But a layer only reaches
its memory block, so the model does NOT see every earlier position:

* ``local_1d``: a layer reaches at least ``l_m`` positions back (from the first query of a block), at most
  ``l_q + l_m - 1``; after ``L`` layers every position sees every earlier one if ``L l_m >= T - 1`` (the CIFAR-10
  configuration: ``12 x 256 >= 3071``), otherwise only the last ``>= L l_m``;
* ``local_2d``: besides the depth limit (``h_m`` rows up per layer), a **true blind spot at any depth** whenever the
  memory is narrower than a grid row: the end of row ``i - 1`` beyond a block's right flange is only in the memory of
  later positions of rows ``i - 1 .. i + h_q - 1``, so the first positions of row ``i`` never depend on it. The
  registered MNIST configuration's flange spans the whole row (no blind spot, depth-limited only).

Both are tested as exactly what they are (``BLIND_SPOT`` in ``tests/models/test_priors.py``, the masks in
``tests/models/test_image_transformer.py``).

**Encoded input.** As ImageGPT's: :meth:`ImageTransformer.encode_input` keeps the values as floats and
:meth:`ImageTransformer.embed_values` interpolates linearly between embedding rows, which at integer values is the
lookup, exactly, and is differentiable in the encoded input (the gradient tests of causality see it).

Cached sampling: each layer keeps key and value buffers of the whole sequence
(:class:`pixelprior.nn.KeyValueCache`); the step of position ``t`` runs that position through every layer, writes its
key and value at ``t`` and attends over the visible positions of its memory block only (``<= l_q + l_m``, or
``(h_q + h_m)(w_q + 2 w_m)``, per layer, whatever the image size). As ImageGPT's, call ``c`` of a pixel commits
channel ``c`` and runs the later channels of the pixel on the canvas as it stands, so that each call returns the
teacher-forced parameters of the whole pixel.

``num_layers`` is the number of attention + feed-forward blocks (12 in [1]'s CIFAR-10 model).

Einops letters: ``b`` batch, ``t`` sequence positions, ``h w`` grid rows and columns, ``c`` data channels, ``k``
values, ``d`` model channels.

NOTE: unlike [1]'s local 2D attention, which generates the image block by block (raster order over the query
blocks, raster order inside each), every model here generates in raster order over the whole image (the contract
of :mod:`pixelprior.sampling`): the block masks hide every later position in that order.
NOTE: unlike [1], only the categorical likelihood: [1]'s discretized logistic mixture models a pixel's channels
jointly from one position per pixel (a different input and sequence), not the per-channel positions here.
NOTE: unlike [1], the image-conditioned encoder-decoder (super-resolution) is not implemented; spatial conditions
enter as a per-position bias.
NOTE: as tensor2tensor's implementation of [1], the attention projections have no bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from einops import rearrange, repeat
from torch import nn

from ..nn.attention import KeyValueCache, LocalBlocks, local_attention
from ..nn.conditioning import ConditionBias
from ..nn.stepping import Index, pick
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class
from .sequence import RasterSequenceStep, SequenceCache

ATTENTION_TYPES = ("local_1d", "local_2d")
POSITION_ENCODINGS = ("sinusoidal", "learned")


def sinusoidal_encoding(positions: torch.Tensor, channels: int) -> torch.Tensor:
    """Sines and cosines of ``positions`` at ``channels / 2`` geometrically spaced frequencies (periods from
    ``2 pi`` to ``2 pi 10^4``), as the Transformer's timing signal.

    Shapes:
        positions: ``(t,)`` -> ``(t, channels)`` float64
    """
    n = channels // 2
    inv_timescales = torch.exp(
        -math.log(1e4) * torch.arange(n, dtype=torch.float64, device=positions.device) / max(n - 1, 1)
    )
    angles = positions.to(torch.float64)[:, None] * inv_timescales  # (t, n)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class LocalSelfAttention(nn.Module):
    """Multi-head local self-attention over query blocks (see :func:`pixelprior.nn.attention.local_attention`).

    Args:
        channels: ``D``, divisible by ``num_heads``.
        num_heads: attention heads.
        dropout: dropout on the attention weights.

    Shapes:
        x: ``(b, t, D)`` -> ``(b, t, D)``
    """

    def __init__(self, channels: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.dropout_p = num_heads, dropout
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.proj = nn.Linear(channels, channels, bias=False)

    def forward(self, x: torch.Tensor, blocks: LocalBlocks) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (b, t, D) each
        p = self.dropout_p if self.training else 0.0
        return self.proj(local_attention(q, k, v, blocks, self.num_heads, p))

    def step(
        self, x: torch.Tensor, cache: KeyValueCache, t: Index, visible: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Position ``t`` alone: store its key and value, attend over the ``visible`` positions (where ``mask``).

        Shapes:
            x: ``(b, D)``, visible: ``(m,)``, mask: ``(m,)`` or ``None`` -> ``(b, D)``
        """
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        cache.write(t, k, v)
        return self.proj(cache.attend_at(q, visible, mask))


class Block(nn.Module):
    """Local attention and a ReLU feed-forward network, each with dropout and a residual connection.

    Post-norm (``norm_first=False``, [1]): ``x = LN(x + drop(attn(x)))``, ``x = LN(x + drop(ffn(x)))``;
    pre-norm: ``x = x + drop(attn(LN(x)))``, ``x = x + drop(ffn(LN(x)))``.

    Args:
        channels: ``D``.
        num_heads: attention heads.
        ffn_channels: hidden width of the feed-forward network.
        dropout: residual, feed-forward and attention dropout.
        norm_first: pre-norm when True.

    Shapes:
        x: ``(b, t, D)`` -> ``(b, t, D)``
    """

    def __init__(
        self, channels: int, num_heads: int, ffn_channels: int, dropout: float = 0.0, norm_first: bool = False
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = LocalSelfAttention(channels, num_heads, dropout)
        self.norm1 = nn.LayerNorm(channels)
        self.ffn = nn.Sequential(
            nn.Linear(channels, ffn_channels), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_channels, channels)
        )
        self.norm2 = nn.LayerNorm(channels)
        self.residual_dropout = nn.Dropout(dropout)

    def _sublayers(self, x: torch.Tensor, attend) -> torch.Tensor:
        drop = self.residual_dropout
        if self.norm_first:
            x = x + drop(attend(self.norm1(x)))
            return x + drop(self.ffn(self.norm2(x)))
        x = self.norm1(x + drop(attend(x)))
        return self.norm2(x + drop(self.ffn(x)))

    def forward(self, x: torch.Tensor, blocks: LocalBlocks) -> torch.Tensor:
        return self._sublayers(x, lambda y: self.attn(y, blocks))

    def step(
        self, x: torch.Tensor, cache: KeyValueCache, t: Index, visible: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The block at position ``t`` (see :meth:`LocalSelfAttention.step`).

        Shapes:
            x: ``(b, D)`` -> ``(b, D)``
        """
        return self._sublayers(x, lambda y: self.attn.step(y, cache, t, visible, mask))


@dataclass(kw_only=True)
class ImageTransformerCache(SequenceCache):
    """Cached-sampling state of an :class:`ImageTransformer`."""

    blocks: LocalBlocks
    positions: torch.Tensor  # (T, D): the position encoding
    bias: torch.Tensor | None  # (B, T, D), (B, 1, D) or None: the conditioning


@register_prior_class
class ImageTransformer(RasterSequenceStep, AutoregressivePrior):
    """Image Transformer of Parmar et al. 2018: local self-attention over the raster sequence of pixel channels.

    The defaults are [1]'s best CIFAR-10 model (tensor2tensor ``imagetransformer_cifar10_base``, 2.90 bits/dim):
    12 post-norm layers of width 512, 4 heads, a 2048-wide feed-forward network, local 1D attention with query
    blocks of 256 positions and a memory of the 256 before them, sinusoidal positions ([1] adds dropout 0.3, see the
    registered ``image_transformer_cifar10``).

    Args:
        sample_size: ``int`` or ``(H, W)``.
        in_channels: data channels ``C``, each a separate position.
        num_values: values per channel ``K``.
        hidden_channels: ``D``, divisible by ``num_heads`` and by 4 (by 2 for learned positions).
        num_layers: number of attention + feed-forward blocks.
        num_heads: attention heads.
        ffn_channels: hidden width of the feed-forward networks; ``None`` for ``4 D``.
        attention: ``"local_1d"`` or ``"local_2d"``.
        block_length: ``l_q``, query block length of ``local_1d``.
        memory_length: ``l_m``, positions before a query block in its memory (``local_1d``).
        query_shape: ``(h_q, w_q)`` query rectangle of ``local_2d`` on the ``H x (W C)`` grid (an int: a square).
        memory_flange: ``(h_m, w_m)`` rows above and columns left and right of it in its memory (``local_2d``).
        position_encoding: ``"sinusoidal"`` or ``"learned"``.
        norm_first: pre-norm blocks and a final LayerNorm instead of [1]'s post-norm.
        dropout: input, residual, feed-forward and attention dropout probability.
        num_classes: class-conditional when an int (a class embedding added to every position).
        cond_channels: spatially conditioned when an int (a projection of the condition added to each pixel's
            positions).
        likelihood: ``"categorical"`` only.

    Shapes:
        x: ``(B, C, H, W)`` long -> params ``(B, C K, H, W)``

    Example:
        >>> from pixelprior import ImageTransformer
        >>> model = ImageTransformer(sample_size=8, in_channels=3, num_values=16, hidden_channels=32, num_layers=2,
        ...                          num_heads=2, block_length=24, memory_length=24)
        >>> model.sample(2).shape
        torch.Size([2, 3, 8, 8])
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = 32,
        in_channels: int = 3,
        num_values: int = 256,
        hidden_channels: int = 512,
        num_layers: int = 12,
        num_heads: int = 4,
        ffn_channels: int | None = None,
        attention: str = "local_1d",
        block_length: int = 256,
        memory_length: int = 256,
        query_shape: int | tuple[int, int] = (8, 32),
        memory_flange: int | tuple[int, int] = (8, 32),
        position_encoding: str = "sinusoidal",
        norm_first: bool = False,
        dropout: float = 0.0,
        num_classes: int | None = None,
        cond_channels: int | None = None,
        likelihood: str = "categorical",
    ) -> None:
        super().__init__()
        self._check_sequence_likelihood(likelihood)
        self._init_prior(sample_size, in_channels, num_values, num_classes, cond_channels, likelihood)
        ffn_channels = 4 * hidden_channels if ffn_channels is None else ffn_channels
        for name, value in (
            ("hidden_channels", hidden_channels),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("ffn_channels", ffn_channels),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Expected {name} to be an int >= 1, got {value!r}.")
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"Expected attention to be one of {ATTENTION_TYPES}, got {attention!r}.")
        if position_encoding not in POSITION_ENCODINGS:
            raise ValueError(
                f"Expected position_encoding to be one of {POSITION_ENCODINGS}, got {position_encoding!r}."
            )
        if hidden_channels % num_heads:
            raise ValueError(f"Expected hidden_channels divisible by num_heads={num_heads}, got {hidden_channels}.")
        multiple = 4 if position_encoding == "sinusoidal" else 2
        if hidden_channels % multiple:
            raise ValueError(
                f"Expected hidden_channels divisible by {multiple} (half for rows, half for columns and channels, "
                f"{position_encoding} positions), got {hidden_channels}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout!r}.")
        H, W = self.grid_size
        D = hidden_channels
        self.sequence_length = H * W * in_channels
        self.local_blocks = self._build_local_blocks()  # checks the block sizes now (ValueError)
        self.value_embedding = nn.Embedding(in_channels * num_values, D)  # a K x D table per channel
        if position_encoding == "learned":
            self.row_embedding = nn.Embedding(H, D // 2)
            self.column_embedding = nn.Embedding(W * in_channels, D // 2)  # column and channel: x = j C + c
        self.condition = ConditionBias(D, num_classes, cond_channels) if num_classes or cond_channels else None
        self.input_dropout = nn.Dropout(dropout)  # not self.dropout: the config's float would shadow it
        self.layers = nn.ModuleList(Block(D, num_heads, ffn_channels, dropout, norm_first) for _ in range(num_layers))
        self.norm = nn.LayerNorm(D) if norm_first else None
        self.head = nn.Linear(D, num_values)

    # ----------------------------------------------------------------------------------------------- pieces
    def _build_local_blocks(self) -> LocalBlocks:
        """The query and memory blocks of the sequence, built once on the CPU (also under a meta-device context) and
        moved with the model; non-persistent buffers, not in the weights."""
        cfg, cpu = self.config, torch.device("cpu")
        if cfg.attention == "local_1d":
            return LocalBlocks.local_1d(self.sequence_length, cfg.block_length, cfg.memory_length, device=cpu)
        H, W = self.grid_size
        return LocalBlocks.local_2d(H, W * self.in_channels, cfg.query_shape, cfg.memory_flange, device=cpu)

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """The values as floats (integer-valued); the embedding is taken in :meth:`embed_values`.

        Shapes:
            x: ``(B, C, h, w)`` long -> ``(B, C, h, w)`` float of the model's dtype
        """
        return x.to(self.dtype)

    def embed_values(self, v: torch.Tensor, channel: torch.Tensor | int) -> torch.Tensor:
        """Channel-specific embedding of integer-valued floats: exactly ``E_c[v]``, differentiable in ``v``.

        Linear interpolation between the rows ``floor(v)`` and ``floor(v) + 1`` of channel ``c``'s table (the last
        row pairs with the one before it); at an integer ``v`` one weight is exactly 1 and the other exactly 0.

        Shapes:
            v: ``(...)`` float, channel: ``(...)`` long or an int -> ``(..., D)``
        """
        K = self.num_values
        low = v.detach().floor().clamp(0, K - 2)
        frac = (v - low).unsqueeze(-1)  # 0 at v = low, 1 at v = low + 1
        index = channel * K + low.long()  # row of E_c[low] in the stacked (C K, D) table
        weight = self.value_embedding.weight
        return (1 - frac) * F.embedding(index, weight) + frac * F.embedding(index + 1, weight)

    def position_encoding(self) -> torch.Tensor:
        """Encoding of every position: ``D / 2`` channels for the row, ``D / 2`` for ``x = j C + c``.

        Shapes:
            -> ``(T, D)``
        """
        H, W = self.grid_size
        Wd, D, device = W * self.in_channels, self.config.hidden_channels, self.device
        if self.config.position_encoding == "learned":
            rows, cols = self.row_embedding.weight, self.column_embedding.weight  # (H, D/2), (W C, D/2)
        else:
            rows = sinusoidal_encoding(torch.arange(H, device=device), D // 2).to(self.dtype)
            cols = sinusoidal_encoding(torch.arange(Wd, device=device), D // 2).to(self.dtype)
        return torch.cat([repeat(rows, "h d -> (h x) d", x=Wd), repeat(cols, "x d -> (h x) d", h=H)], dim=1)

    def _conditioning(self, class_labels: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The class and spatial bias of every position (``(B, 1, D)`` for labels only; ``None`` unconditional).

        Shapes:
            -> ``(B, T, D)``, ``(B, 1, D)`` or ``None``
        """
        bias = self.condition(class_labels, cond) if self.condition is not None else None  # (B, D, H|1, W|1)
        if bias is None:
            return None
        if bias.shape[-2:] == (1, 1):
            return rearrange(bias, "b d 1 1 -> b 1 d")
        return repeat(bias, "b d h w -> b (h w c) d", c=self.in_channels)  # each pixel's bias on its C positions

    # ----------------------------------------------------------------------------------------------- network
    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        B, C, H, W = h.shape
        values = rearrange(h, "b c h w -> b (h w c)")  # (B, T): position t = (i W + j) C + c
        channels = torch.arange(self.sequence_length, device=h.device) % C  # channel of each position
        # Shift right: position t reads value t - 1 (embedded with its channel's table), position 0 zeros.
        x = self.embed_values(values[:, :-1], channels[:-1])  # (B, T - 1, D)
        x = torch.cat([x.new_zeros(B, 1, x.shape[-1]), x], dim=1)  # (B, T, D)
        x = x + self.position_encoding()
        bias = self._conditioning(class_labels, cond)
        if bias is not None:
            x = x + bias
        x = self.input_dropout(x)
        for layer in self.layers:
            x = layer(x, self.local_blocks)
        if self.norm is not None:
            x = self.norm(x)
        logits = self.head(x)  # (B, T, K)
        return rearrange(logits, "b (h w c) k -> b (c k) h w", h=H, w=W, c=C)

    # -------------------------------------------------------------------------------------- cached sampling
    def init_cache(
        self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> ImageTransformerCache:
        B, T, D = batch_size, self.sequence_length, self.config.hidden_channels
        kv = dict(device=self.device, dtype=self.dtype)
        return ImageTransformerCache(
            memory=[KeyValueCache(B, T, D, D, self.config.num_heads, **kv) for _ in self.layers],
            params=torch.zeros(B, self.distribution.num_params, **kv),
            next_input=torch.zeros(B, D, **kv),  # position 0 reads zeros
            blocks=self.local_blocks,
            positions=self.position_encoding(),
            bias=self._conditioning(class_labels, cond),
        )

    def _embed(self, value: torch.Tensor, channel: int) -> torch.Tensor:
        """Shapes: value: ``(B,)`` -> ``(B, D)`` (the table of ``channel``)."""
        return self.embed_values(value, channel)

    def _position(self, cache: ImageTransformerCache, x: torch.Tensor, t: Index) -> torch.Tensor:
        """The logits of position ``t`` from its input embedding ``x``; writes its keys and values at index ``t``.

        Shapes:
            x: ``(B, D)`` -> ``(B, K)``
        """
        x = x + pick(cache.positions, 0, t)
        bias = cache.bias
        if bias is not None:
            x = x + pick(bias, 1, t if bias.shape[1] > 1 else 0)
        # The visible memory: its positions (an int t), or the fixed-size memory block and a mask (a tensor t).
        visible, mask = (cache.blocks.visible(t), None) if isinstance(t, int) else cache.blocks.memory_of(t)
        for layer, memory in zip(self.layers, cache.memory, strict=True):
            x = layer.step(x, memory, t, visible, mask)
        if self.norm is not None:
            x = self.norm(x)
        return self.head(x)


register_prior(
    "image_transformer_cifar10",
    ImageTransformer,
    "Image Transformer of [1] on CIFAR-10 (3x32x32, 256 values, a 3072-position sequence), its best model "
    "(2.90 bits/dim; tensor2tensor imagetransformer_cifar10_base): 12 post-norm layers of width 512, 4 heads, "
    "feed-forward 2048, local 1D attention (256-position query blocks, 256 positions of memory), dropout 0.3 "
    "(38.3M parameters).",
    sample_size=32,
    in_channels=3,
    num_values=256,
    hidden_channels=512,
    num_layers=12,
    num_heads=4,
    ffn_channels=2048,
    attention="local_1d",
    block_length=256,
    memory_length=256,
    dropout=0.3,
)
register_prior(
    "image_transformer_mnist",
    ImageTransformer,
    "Image Transformer with local 2D attention on binarized MNIST (1x28x28, 2 values; not a configuration of [1]): "
    "6 pre-norm layers of width 128, 4 heads, 4x14 query blocks with a 4-row, 14-column memory flange.",
    sample_size=28,
    in_channels=1,
    num_values=2,
    hidden_channels=128,
    num_layers=6,
    num_heads=4,
    ffn_channels=512,
    attention="local_2d",
    query_shape=(4, 14),
    memory_flange=(4, 14),
    norm_first=True,
)
