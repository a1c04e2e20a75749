"""Image GPT [1]: a GPT-2 decoder ([2]) over the raster sequence of values, with key/value caching for sampling.

[1] M. Chen, A. Radford, R. Child, J. Wu, H. Jun, D. Luan, I. Sutskever. Generative Pretraining from Pixels.
    ICML 2020. https://cdn.openai.com/papers/Generative_Pretraining_from_Pixels_V2.pdf
[2] A. Radford, J. Wu, R. Child, D. Luan, D. Amodei, I. Sutskever. Language Models are Unsupervised Multitask
    Learners. 2019. https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf

**The sequence.** A ``(C, H, W)`` grid of values becomes a sequence of ``T = H W C`` values in raster order, the
``C`` channels of a pixel consecutive (pixel-major, channel-minor: R -> G -> B within a pixel, the order of the
categorical likelihood's ``channel_steps``): channel ``c`` of pixel ``(i, j)`` is position ``t = (i W + j) C + c``.
Codes of a VQ-VAE, gray levels and palette colours (:class:`pixelprior.data.ColorPalette`, the 9-bit palette of
[1]) are one value per pixel (``C = 1``).

Architecture (``D = hidden_channels``):

* **input**: the sequence shifted right by one position: position ``t`` reads the token embedding of value
  ``t - 1``, position 0 a learned start token (one per class when ``num_classes`` is set: class conditioning);
  plus a learned position embedding, plus (``cond_channels``) a linear projection of the condition at the pixel
  of position ``t`` (the condition is fully observed, so this is causal);
* ``num_layers`` **pre-norm blocks** ([2]): ``x + attn(N(x))`` with causal multi-head self-attention
  (:func:`torch.nn.functional.scaled_dot_product_attention`, ``is_causal=True``: position ``t`` attends to
  positions ``<= t``, which hold values ``< t``), then ``x + MLP(N(x))`` with a ``4 D`` MLP;
* a final norm ``N`` and a linear head to ``num_values`` logits per position, laid out as the categorical
  likelihood expects (the logits of channel ``c`` of pixel ``(i, j)`` are maps ``c K .. (c + 1) K - 1`` at
  ``(i, j)``).

**The norm and the activation** (``norm_type``, ``activation``). The defaults are GPT-2's ([2]):
``norm_type="layer_norm"`` (:class:`torch.nn.LayerNorm`, ``(x - mean(x)) / sqrt(var(x) + eps) * g + b``) and
``activation="gelu"`` (the erf GELU). OpenAI's released Image GPT models ([1]; ``openai/imagegpt-small``,
``-medium``, ``-large`` in transformers) use two others, and ``norm_type="rms_norm", activation="quick_gelu"`` is
exactly that network:

* ``"rms_norm"``: ``x / sqrt(mean(x^2) + eps) * g`` (:class:`torch.nn.RMSNorm`; no mean subtraction, no bias),
  transformers' ``ImageGPTLayerNorm``;
* ``"quick_gelu"``: ``x * sigmoid(1.702 x)`` (:func:`pixelprior.nn.quick_gelu`), transformers' ``quick_gelu``.

The registered ``image_gpt_small`` / ``_medium`` / ``_large`` are the three published models with these options
(:mod:`pixelprior.converters.imagegpt` loads their weights). With either choice the norm acts on each position on
its own, so nothing mixes positions but the causal attention: position ``t`` depends on every value ``< t`` (no
blind spot) and on nothing else.

**Encoded input.** :meth:`ImageGPT.encode_input` keeps the values as floats (``(B, C, H, W)``, integer-valued).
The token embedding of a value ``v`` interpolates linearly between the embedding rows ``floor(v)`` and
``floor(v) + 1``: at the integer values the model is given it *is* the lookup ``E[v]``, exactly, and it is
differentiable in the encoded input, so the gradient tests of causality and of the receptive field see it.

Initialization as GPT-2 / nanoGPT: normal(0, 0.02) weights, zero biases, the residual projections scaled by
``1 / sqrt(2 num_layers)``.

``num_layers`` is the number of transformer blocks (24 for iGPT-S).

Einops letters: ``b`` batch, ``t`` sequence positions, ``h w`` grid rows and columns, ``c`` data channels, ``k``
values, ``n`` heads, ``d`` channels per head, ``e`` condition channels, ``p`` pixels.

NOTE: unlike [1], which is unconditional, class labels are supported as the start token and spatial conditions
as a per-pixel bias of the input embeddings.
NOTE: unlike [1], which models 32x32 CIFAR-10 and 32x32 / 48x48 / 64x64 ImageNet through a 9-bit palette only,
any grid and ``C`` channels of any ``num_values`` are accepted (the sequence then has ``H W C`` positions).
NOTE: unlike [1] (and [2]), the output head has no tie to the token embedding ([1] does not tie them either)
and no bias; [1]'s sparse attention variants and BERT objective are not implemented.

Cached sampling: each layer keeps a :class:`~pixelprior.nn.KeyValueCache` (``(B, n, T, d)`` buffers). The step of
position ``t`` runs one position through every layer: it writes that position's key and value at index ``t`` and
attends over indices ``0 .. t``, ``O(t)`` per layer. The sampler steps each pixel ``C`` times (one per channel); step
``c`` runs position ``(i W + j) C + c``, whose input (value ``t - 1``) is final by then.
So that a step returns the teacher-forced parameters of the whole pixel (the contract of ``step``), call ``c``
also runs the later channels ``c + 1 .. C - 1`` of the pixel from the canvas as it stands; their keys and values
are overwritten by later calls, and their logits, read from not-yet-drawn values while sampling, are never used
by the sampler. This costs ``C (C + 1) / 2`` position evaluations per pixel instead of ``C`` (nothing extra for
``C = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from einops import rearrange, repeat
from torch import nn

from ..nn.activations import QuickGELU
from ..nn.attention import KeyValueCache
from ..nn.stepping import Index, pick
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class
from .sequence import RasterSequenceStep, SequenceCache


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: position ``t`` attends to positions ``<= t``.

    Args:
        channels: ``D = n d``.
        num_heads: ``n``.
        dropout: dropout on the attention weights and on the output.

    Shapes:
        x: ``(b, t, D)`` -> ``(b, t, D)``
    """

    def __init__(self, channels: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.dropout_p = num_heads, dropout
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b t (s n d) -> s b n t d", s=3, n=self.num_heads)
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (b, n, t, d)
        return self.dropout(self.proj(rearrange(out, "b n t d -> b t (n d)")))

    def step(self, x: torch.Tensor, cache: KeyValueCache, t: Index) -> torch.Tensor:
        """Position ``t`` alone: write its key and value at index ``t`` of the cache, attend over ``0 .. t``.

        Shapes:
            x: ``(b, D)`` -> ``(b, D)``
        """
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (b, (n d)) each
        cache.write(t, k, v)
        return self.proj(cache.attend(q, t + 1))


NORMS = ("layer_norm", "rms_norm")
ACTIVATIONS = ("gelu", "quick_gelu")
NORM_EPS = 1e-5  # GPT-2's and iGPT's epsilon (transformers' layer_norm_epsilon of the published models)


def make_norm(norm: str, channels: int) -> nn.Module:
    """The per-position norm: ``"layer_norm"`` (GPT-2, mean and variance, with a bias) or ``"rms_norm"`` (iGPT:
    ``x / sqrt(mean(x^2) + eps) * g``)."""
    if norm == "rms_norm":
        return nn.RMSNorm(channels, eps=NORM_EPS)
    return nn.LayerNorm(channels, eps=NORM_EPS)


class Block(nn.Module):
    """Pre-norm transformer block of GPT-2: ``x + attn(N(x))``, then ``x + MLP(N(x))`` (``4 D`` MLP).

    Args:
        channels: ``D``.
        num_heads: attention heads.
        dropout: residual and attention dropout.
        norm: ``"layer_norm"`` or ``"rms_norm"`` (see the module docstring).
        activation: the MLP's, ``"gelu"`` or ``"quick_gelu"``.

    Shapes:
        x: ``(b, t, D)`` -> ``(b, t, D)``
    """

    def __init__(
        self, channels: int, num_heads: int, dropout: float = 0.0, norm: str = "layer_norm", activation: str = "gelu"
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, channels)
        self.attn = CausalSelfAttention(channels, num_heads, dropout)
        self.norm2 = make_norm(norm, channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, 4 * channels),
            QuickGELU() if activation == "quick_gelu" else nn.GELU(),
            nn.Linear(4 * channels, channels),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def step(self, x: torch.Tensor, cache: KeyValueCache, t: Index) -> torch.Tensor:
        """The block at position ``t`` (see :meth:`CausalSelfAttention.step`).

        Shapes:
            x: ``(b, D)`` -> ``(b, D)``
        """
        x = x + self.attn.step(self.norm1(x), cache, t)
        return x + self.mlp(self.norm2(x))


@dataclass(kw_only=True)
class ImageGPTCache(SequenceCache):
    """Cached-sampling state of an :class:`ImageGPT`."""

    cond: torch.Tensor | None  # (B, H W, D): the condition's projection at each pixel


@register_prior_class
class ImageGPT(RasterSequenceStep, AutoregressivePrior):
    """Image GPT of Chen et al. 2020: a GPT-2 decoder over the raster sequence of values (channels consecutive).

    Args:
        sample_size: ``int`` or ``(H, W)``.
        in_channels: data channels ``C``; a pixel's channels are ``C`` consecutive positions (1 for codes and
            palette colours, as [1]).
        num_values: values per channel ``K`` (512 for [1]'s palette).
        hidden_channels: ``D``, the width of the embeddings and of every block.
        num_layers: number of transformer blocks.
        num_heads: attention heads (``D`` divisible by it).
        dropout: embedding, attention and residual dropout probability.
        num_classes: class-conditional when an int (a start token per class).
        cond_channels: spatially conditioned when an int (a projection of the condition added to the input
            embeddings of each pixel's positions).
        likelihood: ``"categorical"`` only.
        norm_type: ``"layer_norm"`` (default, GPT-2's ``nn.LayerNorm``) or ``"rms_norm"`` (OpenAI's Image GPT:
            ``x / sqrt(mean(x^2) + eps) * g``, no mean subtraction, no bias), in every block and before the head
            (not ``norm``: the config value would shadow the ``norm`` module).
        activation: the MLP's: ``"gelu"`` (default, the erf GELU) or ``"quick_gelu"`` (OpenAI's Image GPT:
            ``x * sigmoid(1.702 x)``).

    Shapes:
        x: ``(B, C, H, W)`` long -> params ``(B, C K, H, W)``
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = 32,
        in_channels: int = 1,
        num_values: int = 512,
        hidden_channels: int = 512,
        num_layers: int = 24,
        num_heads: int = 8,
        dropout: float = 0.0,
        num_classes: int | None = None,
        cond_channels: int | None = None,
        likelihood: str = "categorical",
        norm_type: str = "layer_norm",
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self._check_sequence_likelihood(likelihood)
        if norm_type not in NORMS:
            raise ValueError(f"Expected norm_type to be one of {list(NORMS)}, got {norm_type!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Expected activation to be one of {list(ACTIVATIONS)}, got {activation!r}.")
        self._init_prior(sample_size, in_channels, num_values, num_classes, cond_channels, likelihood)
        for name, value in (
            ("hidden_channels", hidden_channels),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected {name} to be an int >= 1, got {value!r}.")
        if hidden_channels % num_heads:
            raise ValueError(f"Expected hidden_channels divisible by num_heads={num_heads}, got {hidden_channels}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout!r}.")
        H, W = self.grid_size
        D = hidden_channels
        self.sequence_length = H * W * in_channels
        self.token_embedding = nn.Embedding(num_values, D)
        self.start_embedding = nn.Embedding(num_classes or 1, D)  # the start token, one per class
        self.position_embedding = nn.Embedding(self.sequence_length, D)
        self.cond_proj = nn.Linear(cond_channels, D) if cond_channels is not None else None
        self.embedding_dropout = nn.Dropout(dropout)  # not self.dropout: the config's float would shadow it
        self.blocks = nn.ModuleList(Block(D, num_heads, dropout, norm_type, activation) for _ in range(num_layers))
        self.norm = make_norm(norm_type, D)
        self.head = nn.Linear(D, num_values, bias=False)
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        # GPT-2 / nanoGPT: N(0, 0.02), zero biases, residual projections scaled by 1 / sqrt(2 num_layers).
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * num_layers))

    # ------------------------------------------------------------------------------------------------- input
    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """The values as floats (integer-valued); the token embedding is taken in :meth:`embed_values`.

        Shapes:
            x: ``(B, C, h, w)`` long -> ``(B, C, h, w)`` float of the model's dtype
        """
        return x.to(self.dtype)

    def embed_values(self, v: torch.Tensor) -> torch.Tensor:
        """Token embedding of integer-valued floats: exactly ``E[v]``, differentiable in ``v``.

        Linear interpolation between the rows ``floor(v)`` and ``floor(v) + 1`` (the last row pairs with the one
        before it); at an integer ``v`` one weight is exactly 1 and the other exactly 0.

        Shapes:
            v: ``(...)`` float -> ``(..., D)``
        """
        low = v.detach().floor().clamp(0, self.num_values - 2)
        frac = (v - low).unsqueeze(-1)  # 0 at v = low, 1 at v = low + 1
        low = low.long()
        weight = self.token_embedding.weight
        return (1 - frac) * F.embedding(low, weight) + frac * F.embedding(low + 1, weight)

    def _start(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """The start token of each sample: its class's, or the single learned one.

        Shapes:
            -> ``(B, D)``
        """
        if class_labels is None:
            return self.start_embedding.weight[0].expand(batch_size, -1)
        return self.start_embedding(class_labels)

    def _cond_features(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """Shapes: cond ``(B, e, H, W)`` -> ``(B, H W, D)`` (one row per pixel, raster order)."""
        if self.cond_proj is None:
            return None
        return self.cond_proj(rearrange(cond, "b e h w -> b (h w) e"))

    # ----------------------------------------------------------------------------------------------- network
    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        B, C, H, W = h.shape
        values = rearrange(h, "b c h w -> b (h w c)")  # (B, T): position t = (i W + j) C + c
        # Shift right: position t reads value t - 1, position 0 the start token.
        x = torch.cat([self._start(class_labels, B)[:, None], self.embed_values(values[:, :-1])], 1)  # (B, T, D)
        x = x + self.position_embedding.weight
        features = self._cond_features(cond)
        if features is not None:
            x = x + repeat(features, "b p d -> b (p c) d", c=C)  # each pixel's condition on its C positions
        x = self.embedding_dropout(x)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))  # (B, T, K)
        return rearrange(logits, "b (h w c) k -> b (c k) h w", h=H, w=W, c=C)

    # -------------------------------------------------------------------------------------- cached sampling
    def init_cache(
        self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> ImageGPTCache:
        B, T, D = batch_size, self.sequence_length, self.config.hidden_channels
        kv = dict(device=self.device, dtype=self.dtype)
        return ImageGPTCache(
            memory=[KeyValueCache(B, T, D, D, self.config.num_heads, **kv) for _ in self.blocks],
            params=torch.zeros(B, self.distribution.num_params, **kv),
            next_input=self._start(class_labels, B).detach().clone(),  # position 0 reads the start token
            cond=self._cond_features(cond),
        )

    def _embed(self, value: torch.Tensor, channel: int) -> torch.Tensor:
        """Shapes: value: ``(B,)`` -> ``(B, D)`` (one table for every channel)."""
        return self.embed_values(value)

    def _position(self, cache: ImageGPTCache, x: torch.Tensor, t: Index) -> torch.Tensor:
        """The logits of position ``t`` from its input embedding ``x``; writes its keys and values at index ``t``.

        Shapes:
            x: ``(B, D)`` -> ``(B, K)``
        """
        x = x + pick(self.position_embedding.weight, 0, t)
        if cache.cond is not None:
            x = x + pick(cache.cond, 1, t // self.in_channels)
        for block, memory in zip(self.blocks, cache.memory, strict=True):
            x = block.step(x, memory, t)
        return self.head(self.norm(x))


register_prior(
    "image_gpt_mnist",
    ImageGPT,
    "Image GPT on binarized MNIST (1x28x28, 2 values; a 784-position sequence): 8 blocks of width 128, 4 heads.",
    sample_size=28,
    in_channels=1,
    num_values=2,
    hidden_channels=128,
    num_layers=8,
    num_heads=4,
)
register_prior(
    "image_gpt_s_cifar10",
    ImageGPT,
    "iGPT-S of [1] on CIFAR-10 through the 9-bit colour palette (1x32x32, 512 values: pixelprior.data.ColorPalette): "
    "24 blocks of width 512, 8 heads (76M parameters).",
    sample_size=32,
    in_channels=1,
    num_values=512,
    hidden_channels=512,
    num_layers=24,
    num_heads=8,
)

# OpenAI's three released Image GPT models as transformers publishes them (openai/imagegpt-small, -medium, -large):
# 32x32 grids of the 512 colour clusters (n_positions 1024; vocab_size 513 = 512 clusters + the start token), the
# iGPT norm and quick_gelu, no bias on the 512-logit head. (n_embd, n_layer, n_head): small (512, 24, 8) and large
# (1536, 48, 16) are the Hub's config.json of openai/imagegpt-small and openai/imagegpt-large; medium (1024, 36, 8)
# is the MODELS table of convert_imagegpt_original_tf2_to_pytorch.py, transformers 4.x's converter of OpenAI's
# TensorFlow checkpoints (it lists small and large as above too), and [1]'s iGPT-M (L = 36, d = 1024, 455M
# parameters).
# Dropout 0.1 is the three configs' attn_pdrop = resid_pdrop = embd_pdrop.
_OPENAI_SIZES = {"small": (512, 24, 8), "medium": (1024, 36, 8), "large": (1536, 48, 16)}
for _size, (_width, _depth, _heads) in _OPENAI_SIZES.items():
    register_prior(
        f"image_gpt_{_size}",
        ImageGPT,
        f"OpenAI's Image GPT {_size} (openai/imagegpt-{_size}), as released: 32x32 grids of its 512 colour clusters, "
        f"{_depth} blocks of width {_width}, {_heads} heads, the iGPT norm (rms_norm) and quick_gelu. Random weights: "
        "load the released ones with `pixelprior convert imagegpt`.",
        sample_size=32,
        in_channels=1,
        num_values=512,
        hidden_channels=_width,
        num_layers=_depth,
        num_heads=_heads,
        dropout=0.1,
        norm_type="rms_norm",
        activation="quick_gelu",
    )
