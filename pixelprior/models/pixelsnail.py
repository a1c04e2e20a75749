"""PixelSNAIL [1]: gated residual causal convolutions interleaved with causal self-attention over every earlier pixel.

[1] X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. PixelSNAIL: An Improved Autoregressive Generative Model.
    ICML 2018. https://arxiv.org/abs/1712.09763 (reference code: github.com/neocxi/pixelsnail-public, model
    ``h12_noup_smallkey``, the released CIFAR-10 model)
[2] A. Razavi, A. van den Oord, O. Vinyals. Generating Diverse High-Fidelity Images with VQ-VAE-2. NeurIPS 2019.
    https://arxiv.org/abs/1906.00446 (its priors over VQ-VAE codes are PixelSNAILs)
[3] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++. ICLR 2017. https://arxiv.org/abs/1701.05517

Architecture (``F = hidden_channels``, ``R = residual_channels``, odd ``k = kernel_size``; 3 in [1]):

* **input**: the encoded input ``x`` (``E`` maps: an embedding of the codes for the categorical likelihood, the
  centred values for the logistic mixture) plus a map of ones (so that the network tells the image from the zero
  padding), through a ``(k//2) x k`` down-shifted convolution, shifted down one row, plus a ``(k//2 + 1) x (k//2)``
  down-right-shifted one, shifted right one column: the stream ``ul`` at ``(i, j)`` sees only pixels before it;
* ``num_layers`` **blocks**, each
  * ``num_res_blocks`` **gated residual blocks** ([3]) on ``ul`` with ``(k//2 + 1) x (k//2 + 1)``
    down-right-shifted convolutions: ``c = conv1(f(ul))``, ``[a | b] = conv2(dropout(f(c)))``,
    ``ul += a * sigmoid(b)``, ``f`` = concat_elu (``elu([x, -x])``) or elu;
  * an **attention block**: keys and values from a ``1x1`` gated residual block and a ``1x1`` convolution of
    ``[x, ul, background]``, queries from ``[ul, background]`` likewise; strictly causal multi-head attention
    (:func:`pixelprior.nn.attention.causal_attention`: position ``p`` reads positions ``< p``, position 0 reads
    nothing and gets zeros); its output enters a ``1x1`` gated residual block on ``ul`` as the auxiliary input
    (added to ``conv1``'s output through a ``1x1`` convolution);
* optionally ``num_output_blocks`` ``1x1`` gated residual blocks (the output stack of [2]);
* the output layer ``1x1(elu(ul))`` to the likelihood's parameters.

The *background* is two maps of the row and column coordinates ``(i - H/2) / H`` and ``(j - W/2) / W``.

**No blind spot.** The raw input ``x`` of position ``p`` enters the keys and values of ``p``, which every later
query reads: one attention block already makes every position depend on every earlier one (the convolutions
alone see a region up and to the left). Without attention (``attention=False``, the bottom prior of [2]) the
model needs ``vertical_stream=True``: the down-shifted stream ``u`` of PixelCNN++ ([3]), ``(k//2 + 1) x k``
down-shifted gated residual blocks over the rows above (the input layer ``(k//2 + 1) x k``, shifted down once),
feeding each ``ul`` residual block as its auxiliary input; a model with neither raises ``ValueError``.

**Likelihoods.** ``"logistic_mixture"`` (pixels, ``C = 1`` or ``3``, ``num_mixtures`` components) or
``"categorical"`` (codes or gray levels, ``C = 1`` only: the network conditions on whole pixels, so it has no
R -> G -> B ordering within a pixel). The categorical model embeds the values (``embedding_channels`` maps) in
:meth:`PixelSNAIL.encode_input` instead of one-hot encoding them.

**Conditioning.** A class label (``num_classes``) and a spatial condition (``cond_channels``; ``cond`` is a float
map resized to the grid by the base class) add a bias to the gate pre-activations of every gated residual block
(a class embedding plus a ``1x1`` convolution of the condition features), as ``h`` in [1] and [3]. With
``cond_res_blocks > 0`` the condition first goes through a *conditioning stack* ([2]): a ``cond_kernel_size``
convolution to ``cond_hidden_channels`` maps and ``cond_res_blocks`` (non-causal) gated residual blocks. For a
hierarchical VQ-VAE-2 the bottom prior takes the top level as ``cond``: its quantized latents (the code
embeddings, 64 maps in [2]) or a one-hot of its codes (``cond_channels = K``).

``num_layers`` is the number of blocks (each: ``num_res_blocks`` residual blocks, then attention).

Einops letters: ``b`` batch, ``c`` channels, ``h w`` grid rows and columns, ``p`` positions in raster order.

NOTE: unlike [1], which uses weight normalization with data-dependent initialization and Polyak averaging, layers
are plain convolutions (the training loop's EMA does the averaging).
NOTE: the default nonlinearity is concat_elu ([3], and the default of [1]'s ``gated_resnet``), but [1]'s released
CIFAR-10 model was trained with elu (its ``train.py`` default), and the registered configurations use elu.
NOTE: unlike [1] (single-head attention), the attention has ``num_heads`` heads; ``num_heads=1`` is [1].
NOTE: unlike [1], the kernel sizes follow one odd ``kernel_size``; ``kernel_size=3`` gives exactly the reference's
``1 x 3`` / ``2 x 1`` input and ``2 x 2`` residual kernels (and ``2 x 3`` for the vertical stream).
NOTE: unlike [1], the categorical likelihood and spatial conditioning are supported ([1] has neither; [2] uses
both), and the vertical stream is optional ([1]'s ``noup`` CIFAR-10 model has none; its other models have one).
NOTE: unlike [2], where the conditioning stack runs on the top grid and its output is upsampled, the base class
resizes ``cond`` to the grid first (nearest), so the stack runs at the bottom grid's resolution.
NOTE: [2] gives its priors' sizes as "hidden units" (``F``), "residual units" (``R``, the width of the first
convolution of a residual block), "layers" (residual blocks), "attention layers" (blocks), "attention heads",
"conv filter size" (``k``), "dropout", "output stack layers" and "conditioning stack residual blocks"; the
reading of each as an argument here is ours: the paper does not publish its code.

Cached sampling: the stream ``ul`` runs pixel by pixel. Each down-right-shifted residual block keeps the inputs
of its two convolutions (``f(ul)`` and ``f(c)``) as maps; a step writes the new pixel into them and reads back the
``(k//2 + 1) x (k//2 + 1)`` window ending at it (:class:`~pixelprior.nn.GatedResidualStep`). The input layer reads a
copy of the canvas (with its map of ones) in which each pixel is written when it is final. The vertical stream only
reads rows above (after its one down shift), so when row ``i`` is final its row ``i + 1`` is computed for every layer
(``ConvStep.row``). The attention keeps a :class:`~pixelprior.nn.attention.KeyValueCache`; the key and value of a
position (which read the raw input there) are written when it is final, so the query of ``p`` attends to the ``p``
cached positions: ``O(p)`` per step and block. ``1x1`` layers are per pixel; conditioning features are computed once
per sampling run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from ..nn import (
    AnchoredConv2d,
    ConvStep,
    DownRightShiftedConv2d,
    DownShiftedConv2d,
    GatedResidualBlock,
    GatedResidualStep,
    KeyValueCache,
    causal_attention,
    down_shift,
    right_shift,
)
from ..nn.gated import NONLINEARITIES, ConvFactory
from ..nn.stepping import Index, PaddedMap, StepCache, pick
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class


def pointwise(in_channels: int, out_channels: int) -> AnchoredConv2d:
    """A ``1 x 1`` convolution: the residual blocks of the attention and of the output stack."""
    return AnchoredConv2d(in_channels, out_channels, 1)


# Gated residual blocks saved before they were one block (pixelprior.nn.GatedResidualBlock) named their layers so.
LEGACY_BLOCK_NAMES = {"conv1": "conv_in", "aux_conv": "link", "conv2": "conv_out"}


class AttentionBlock(nn.Module):
    """The attention part of a PixelSNAIL block (figure 2 of [1]): queries, keys, values, and the mix-in.

    Args:
        channels: ``F``.
        input_channels: ``E``, the width of the encoded raw input ``x``.
        key_channels: key (and query) width over all heads.
        value_channels: value width over all heads.
        num_heads: attention heads.
        nonlinearity, dropout, num_classes, cond_channels: as :class:`~pixelprior.nn.GatedResidualBlock`.

    Shapes:
        ul: ``(b, F, h, w)``, x: ``(b, E, h, w)``, background: ``(b, 2, h, w)`` -> ``(b, F, h, w)``
    """

    def __init__(
        self,
        channels: int,
        input_channels: int,
        key_channels: int,
        value_channels: int,
        num_heads: int,
        nonlinearity: str,
        dropout: float,
        num_classes: int | None,
        cond_channels: int | None,
    ) -> None:
        super().__init__()
        self.key_channels, self.value_channels, self.num_heads = key_channels, value_channels, num_heads
        raw, query_in = input_channels + channels + 2, channels + 2  # [x, ul, background], [ul, background]
        common = dict(nonlinearity=nonlinearity, dropout=dropout, num_classes=num_classes, cond_channels=cond_channels)
        self.kv_block = GatedResidualBlock(raw, pointwise, **common)
        self.kv_proj = AnchoredConv2d(raw, key_channels + value_channels, 1)
        self.q_block = GatedResidualBlock(query_in, pointwise, **common)
        self.q_proj = AnchoredConv2d(query_in, key_channels, 1)
        self.out_block = GatedResidualBlock(channels, pointwise, aux_channels=value_channels, **common)

    def forward(
        self,
        ul: torch.Tensor,
        x: torch.Tensor,
        background: torch.Tensor,
        class_labels: torch.Tensor | None,
        cond: torch.Tensor | None,
    ) -> torch.Tensor:
        H, W = ul.shape[-2:]
        kv = self.kv_proj(self.kv_block(torch.cat([x, ul, background], 1), None, class_labels, cond))
        k, v = kv.split([self.key_channels, kv.shape[1] - self.key_channels], dim=1)
        q = self.q_proj(self.q_block(torch.cat([ul, background], 1), None, class_labels, cond))
        flat = [rearrange(t, "b c h w -> b (h w) c") for t in (q, k, v)]
        mixed = causal_attention(*flat, num_heads=self.num_heads)  # (b, (h w), value_channels)
        mixed = rearrange(mixed, "b (h w) c -> b c h w", h=H, w=W)
        return self.out_block(ul, mixed, class_labels, cond)

    def stepper(
        self, batch_size: int, size: tuple[int, int], class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> AttentionStep:
        """State for cached sampling (one per sampling run)."""
        kv_proj = self.kv_proj.stepper()
        H, W = size
        return AttentionStep(
            kv_block=self.kv_block.stepper(batch_size, size, class_labels, cond),
            kv_proj=kv_proj,
            q_block=self.q_block.stepper(batch_size, size, class_labels, cond),
            q_proj=self.q_proj.stepper(),
            out_block=self.out_block.stepper(batch_size, size, class_labels, cond),
            key_channels=self.key_channels,
            width=W,
            pending=kv_proj.weight.new_zeros(batch_size, self.out_block.conv_out.out_channels // 2),
            memory=KeyValueCache(
                batch_size,
                H * W,
                self.key_channels,
                self.value_channels,
                self.num_heads,
                kv_proj.weight.device,
                kv_proj.weight.dtype,
            ),
        )


@dataclass
class AttentionStep:
    """An :class:`AttentionBlock` at one position: its ``1x1`` blocks and the keys and values of the final positions.

    Attributes:
        memory: keys and values of positions ``0 .. p - 1`` when position ``p`` is stepped.
        pending: ``ul`` at the current position before the attention (the key/value input there but for its raw
            value, which is final only once the position is committed).
    """

    kv_block: GatedResidualStep
    kv_proj: ConvStep
    q_block: GatedResidualStep
    q_proj: ConvStep
    out_block: GatedResidualStep
    key_channels: int
    width: int
    memory: KeyValueCache
    pending: torch.Tensor  # (B, F)

    def __call__(self, ul: torch.Tensor, i: Index, j: Index, background: torch.Tensor) -> torch.Tensor:
        """Shapes: ul: ``(B, F)``, background: ``(B, 2)`` -> ``(B, F)``."""
        self.pending.copy_(ul)
        q = self.q_proj.point(self.q_block.point(torch.cat([ul, background], 1), i, j))
        mixed = self.memory.attend(q, i * self.width + j)  # (B, value_channels): keys of positions < p, zeros at 0
        return self.out_block.point(ul, i, j, mixed)

    def commit(self, x: torch.Tensor, i: Index, j: Index, background: torch.Tensor) -> None:
        """Position ``(i, j)`` is final with the encoded input ``x``: store its key and value.

        Shapes:
            x: ``(B, E)``, background: ``(B, 2)``
        """
        raw = torch.cat([x, self.pending, background], 1)
        kv = self.kv_proj.point(self.kv_block.point(raw, i, j))
        self.memory.write(i * self.width + j, kv[:, : self.key_channels], kv[:, self.key_channels :])


class PixelSNAILBlock(nn.Module):
    """``num_res_blocks`` down-right-shifted gated residual blocks (and their vertical twins), then attention.

    Shapes:
        u: ``(b, F, h, w)`` or ``None``, ul: ``(b, F, h, w)`` -> u, ul
    """

    def __init__(
        self,
        channels: int,
        residual_channels: int,
        input_channels: int,
        num_res_blocks: int,
        kernel_size: int,
        vertical_stream: bool,
        attention: bool,
        key_channels: int,
        value_channels: int,
        num_heads: int,
        nonlinearity: str,
        dropout: float,
        num_classes: int | None,
        cond_channels: int | None,
    ) -> None:
        super().__init__()
        k2 = kernel_size // 2 + 1
        common = dict(nonlinearity=nonlinearity, dropout=dropout, num_classes=num_classes, cond_channels=cond_channels)
        right: ConvFactory = lambda i, o: DownRightShiftedConv2d(i, o, (k2, k2))  # noqa: E731
        down: ConvFactory = lambda i, o: DownShiftedConv2d(i, o, (k2, kernel_size))  # noqa: E731
        aux = channels if vertical_stream else 0
        self.ul_blocks = nn.ModuleList(
            GatedResidualBlock(channels, right, residual_channels, aux, **common) for _ in range(num_res_blocks)
        )
        self.u_blocks = nn.ModuleList(
            GatedResidualBlock(channels, down, residual_channels, **common)
            for _ in range(num_res_blocks if vertical_stream else 0)
        )
        self.attention = (
            AttentionBlock(channels, input_channels, key_channels, value_channels, num_heads, **common)
            if attention
            else None
        )

    def forward(
        self,
        u: torch.Tensor | None,
        ul: torch.Tensor,
        x: torch.Tensor,
        background: torch.Tensor,
        class_labels: torch.Tensor | None,
        cond: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        for n, ul_block in enumerate(self.ul_blocks):
            if self.u_blocks:
                u = self.u_blocks[n](u, None, class_labels, cond)
            ul = ul_block(ul, u, class_labels, cond)
        if self.attention is not None:
            ul = self.attention(ul, x, background, class_labels, cond)
        return u, ul

    def stepper(
        self, batch_size: int, size: tuple[int, int], class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> PixelSNAILBlockStep:
        """State for cached sampling (one per sampling run)."""

        def steps(blocks: nn.ModuleList) -> list[GatedResidualStep]:
            return [block.stepper(batch_size, size, class_labels, cond) for block in blocks]

        u = steps(self.u_blocks)
        channels = self.ul_blocks[0].conv_out.out_channels // 2
        return PixelSNAILBlockStep(
            ul=steps(self.ul_blocks),
            u=u,
            u_row=u[0].conv_in.weight.new_zeros(len(u), batch_size, channels, size[1]) if u else None,
            attention=None if self.attention is None else self.attention.stepper(batch_size, size, class_labels, cond),
        )


@dataclass
class PixelSNAILBlockStep:
    """A :class:`PixelSNAILBlock` in cached sampling: the ``ul`` blocks per pixel, the ``u`` blocks per row.

    Attributes:
        u_row: ``(num_res_blocks, B, F, W)``: the vertical stream after each ``u`` block, on the current row (the
            ``ul`` blocks' auxiliary input), or ``None`` without a vertical stream.
    """

    ul: list[GatedResidualStep]
    u: list[GatedResidualStep]
    u_row: torch.Tensor | None
    attention: AttentionStep | None

    def __call__(self, ul: torch.Tensor, i: Index, j: Index, background: torch.Tensor) -> torch.Tensor:
        """Shapes: ul: ``(B, F)``, background: ``(B, 2)`` -> ``(B, F)``."""
        for n, block in enumerate(self.ul):
            ul = block.pixel(ul, i, j, pick(self.u_row[n], 2, j) if self.u else None)
        if self.attention is not None:
            ul = self.attention(ul, i, j, background)
        return ul

    def vertical(self, u: torch.Tensor, i: Index) -> torch.Tensor:
        """The ``u`` blocks on row ``i``, from the stream entering the block there.

        Shapes:
            u: ``(B, F, W)`` -> ``(B, F, W)``
        """
        for n, block in enumerate(self.u):
            u = block.row(u, i)
            self.u_row[n] = u
        return u


@register_prior_class
class PixelSNAIL(AutoregressivePrior):
    """PixelSNAIL of Chen et al. 2018: gated residual causal convolutions and causal attention to every earlier pixel.

    Args:
        sample_size: ``int`` or ``(H, W)``.
        in_channels: data channels ``C`` (1 for codes; 1 or 3 with the logistic mixture).
        num_values: values per channel (the codebook size ``K`` for codes, 256 for 8-bit pixels).
        hidden_channels: ``F``, the width of the streams.
        num_layers: number of blocks (``num_res_blocks`` gated residual blocks, then attention), >= 1.
        num_res_blocks: gated residual blocks per block (4 in [1]).
        residual_channels: width of the first convolution of the gated residual blocks of the streams and of the
            output stack (default ``F``, as [1]).
        kernel_size: odd ``k >= 3``: ``(k//2 + 1) x (k//2 + 1)`` down-right-shifted residual convolutions (3 in [1]:
            ``2 x 2``).
        attention: whether the blocks end with attention.
        num_heads: attention heads (1 in [1]).
        key_channels: key and query width over all heads (16 in [1]).
        value_channels: value width over all heads (default ``F // 2``, as [1]).
        vertical_stream: add PixelCNN++'s down-shifted stream (required without attention).
        num_output_blocks: ``1x1`` gated residual blocks after the last block (the output stack of [2]).
        nonlinearity: ``"concat_elu"`` or ``"elu"`` in the residual blocks.
        dropout: dropout probability in the residual blocks (0.5 in [1]).
        embedding_channels: ``E``, the embedding width of the categorical likelihood's values.
        num_mixtures: mixture components of the logistic mixture (10 in [1]).
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.
        cond_res_blocks: residual blocks of the conditioning stack (0: the condition is used as is).
        cond_hidden_channels: width of the conditioning stack (default ``F``).
        cond_kernel_size: odd kernel of the conditioning stack's (non-causal) convolutions.
        likelihood: ``"logistic_mixture"`` or ``"categorical"`` (``C = 1`` only).

    Shapes:
        x: ``(B, C, H, W)`` long -> params ``(B, num_params, H, W)``
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = 32,
        in_channels: int = 3,
        num_values: int = 256,
        hidden_channels: int = 256,
        num_layers: int = 12,
        num_res_blocks: int = 4,
        residual_channels: int | None = None,
        kernel_size: int = 3,
        attention: bool = True,
        num_heads: int = 1,
        key_channels: int = 16,
        value_channels: int | None = None,
        vertical_stream: bool = False,
        num_output_blocks: int = 0,
        nonlinearity: str = "concat_elu",
        dropout: float = 0.0,
        embedding_channels: int = 64,
        num_mixtures: int = 10,
        num_classes: int | None = None,
        cond_channels: int | None = None,
        cond_res_blocks: int = 0,
        cond_hidden_channels: int | None = None,
        cond_kernel_size: int = 3,
        likelihood: str = "logistic_mixture",
    ) -> None:
        super().__init__()
        self._init_prior(sample_size, in_channels, num_values, num_classes, cond_channels, likelihood, num_mixtures)
        if likelihood == "categorical" and in_channels != 1:
            raise ValueError(
                f"Expected in_channels=1 for the categorical likelihood (PixelSNAIL conditions on whole pixels and "
                f"has no R -> G -> B ordering within a pixel), got {in_channels}; use likelihood='logistic_mixture'."
            )
        residual_channels = hidden_channels if residual_channels is None else residual_channels
        value_channels = hidden_channels // 2 if value_channels is None else value_channels
        cond_hidden_channels = hidden_channels if cond_hidden_channels is None else cond_hidden_channels
        self._check_args(
            hidden_channels=hidden_channels,
            num_layers=num_layers,
            num_res_blocks=num_res_blocks,
            residual_channels=residual_channels,
            kernel_size=kernel_size,
            num_heads=num_heads,
            key_channels=key_channels,
            value_channels=value_channels,
            num_output_blocks=num_output_blocks,
            embedding_channels=embedding_channels,
            cond_res_blocks=cond_res_blocks,
            cond_hidden_channels=cond_hidden_channels,
            cond_kernel_size=cond_kernel_size,
        )
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"Expected nonlinearity to be one of {tuple(NONLINEARITIES)}, got {nonlinearity!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout!r}.")
        if not attention and not vertical_stream:
            raise ValueError(
                "Expected vertical_stream=True when attention=False: the down-right-shifted stream alone has a blind "
                "spot (it sees nothing above and to the right of a pixel beyond one column)."
            )
        if cond_res_blocks and cond_channels is None:
            raise ValueError(f"Expected cond_channels for a conditioning stack (cond_res_blocks={cond_res_blocks}).")

        self.categorical = likelihood == "categorical"
        E = embedding_channels if self.categorical else in_channels
        self.embedding = nn.Embedding(num_values, embedding_channels) if self.categorical else None
        cond_features = self._build_cond_stack(cond_channels, cond_res_blocks, cond_hidden_channels, cond_kernel_size)
        self._build_network(E, cond_features)
        H, W = self.grid_size
        rows = ((torch.arange(H) - H / 2) / H).view(1, 1, H, 1).expand(1, 1, H, W)
        cols = ((torch.arange(W) - W / 2) / W).view(1, 1, 1, W).expand(1, 1, H, W)
        self.register_buffer("background", torch.cat([rows, cols], 1), persistent=False)  # (1, 2, H, W)
        # Checkpoints written before the gated residual blocks were one block load too (load_state_dict).
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    def _build_cond_stack(
        self, cond_channels: int | None, cond_res_blocks: int, hidden_channels: int, kernel_size: int
    ) -> int | None:
        """The conditioning stack, cond ``(B, cond_channels, H, W)`` -> features, fully observed; their width."""
        if not cond_res_blocks:
            self.cond_input, self.cond_blocks = None, nn.ModuleList()
            return cond_channels
        plain: ConvFactory = lambda i, o: AnchoredConv2d(i, o, kernel_size)  # noqa: E731
        self.cond_input = AnchoredConv2d(cond_channels, hidden_channels, kernel_size)
        self.cond_blocks = nn.ModuleList(
            GatedResidualBlock(hidden_channels, plain, nonlinearity=self.config.nonlinearity)
            for _ in range(cond_res_blocks)
        )
        return hidden_channels

    def _build_network(self, input_channels: int, cond_features: int | None) -> None:
        """The input layers, the blocks, the output stack and the output layer (``E = input_channels``)."""
        cfg, E = self.config, input_channels
        F_, k = cfg.hidden_channels, cfg.kernel_size
        residual = F_ if cfg.residual_channels is None else cfg.residual_channels
        common = dict(dropout=cfg.dropout, num_classes=cfg.num_classes)
        # Input layers on [x, ones] (E + 1 maps); their outputs are shifted so that (i, j) sees only pixels before it.
        self.ul_input_down = DownShiftedConv2d(E + 1, F_, (k // 2, k))  # then down_shift: rows i - k//2 .. i - 1
        self.ul_input_right = DownRightShiftedConv2d(E + 1, F_, (k // 2 + 1, k // 2))  # then right_shift
        self.u_input = DownShiftedConv2d(E + 1, F_, (k // 2 + 1, k)) if cfg.vertical_stream else None
        self.blocks = nn.ModuleList(
            PixelSNAILBlock(
                F_,
                residual,
                E,
                cfg.num_res_blocks,
                k,
                cfg.vertical_stream,
                cfg.attention,
                cfg.key_channels,
                F_ // 2 if cfg.value_channels is None else cfg.value_channels,
                cfg.num_heads,
                cfg.nonlinearity,
                cond_channels=cond_features,
                **common,
            )
            for _ in range(cfg.num_layers)
        )
        self.output_blocks = nn.ModuleList(
            GatedResidualBlock(
                F_,
                pointwise,
                hidden_channels=residual,
                nonlinearity=cfg.nonlinearity,
                cond_channels=cond_features,
                **common,
            )
            for _ in range(cfg.num_output_blocks)
        )
        self.output = AnchoredConv2d(F_, self.distribution.num_params, 1)

    @staticmethod
    def _check_args(**sizes: int) -> None:
        minimum = {"num_output_blocks": 0, "cond_res_blocks": 0}
        for name, value in sizes.items():
            lo = minimum.get(name, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"Expected {name} to be an int >= {lo}, got {value!r}.")
        for name, lo in (("kernel_size", 3), ("cond_kernel_size", 1)):
            if sizes[name] % 2 == 0 or sizes[name] < lo:
                raise ValueError(f"Expected {name} to be an odd int >= {lo}, got {sizes[name]}.")
        for name in ("key_channels", "value_channels"):
            if sizes[name] % sizes["num_heads"]:
                raise ValueError(f"Expected {name} divisible by num_heads={sizes['num_heads']}, got {sizes[name]}.")

    # ------------------------------------------------------------------------------ network
    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """Values -> network input: an embedding of the values (categorical), the centred values otherwise.

        Shapes:
            x: ``(B, C, h, w)`` long -> ``(B, E, h, w)``
        """
        if self.embedding is None:
            return super().encode_input(x)
        return rearrange(self.embedding(x[:, 0]), "b h w e -> b e h w")

    def _cond_features(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The conditioning stack (identity without one).

        Shapes:
            cond: ``(B, cond_channels, H, W)`` -> ``(B, cond_features, H, W)``
        """
        if cond is None or self.cond_input is None:
            return cond
        c = self.cond_input(cond)
        for block in self.cond_blocks:
            c = block(c)
        return c

    def _background(self, batch_size: int) -> torch.Tensor:
        return self.background.to(self.dtype).expand(batch_size, -1, -1, -1)  # (B, 2, H, W)

    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        B = h.shape[0]
        cond = self._cond_features(cond)
        x_pad = torch.cat([h, torch.ones_like(h[:, :1])], 1)  # (B, E + 1, H, W): ones tell the image from padding
        ul = down_shift(self.ul_input_down(x_pad)) + right_shift(self.ul_input_right(x_pad))  # (B, F, H, W)
        u = down_shift(self.u_input(x_pad)) if self.u_input is not None else None
        background = self._background(B)
        for block in self.blocks:
            u, ul = block(u, ul, h, background, class_labels, cond)
        for out_block in self.output_blocks:
            ul = out_block(ul, None, class_labels, cond)
        return self.output(F.elu(ul))  # (B, num_params, H, W)

    # ------------------------------------------------------------------------------ cached sampling
    def init_cache(
        self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> PixelSNAILCache:
        size, B = self.grid_size, batch_size
        cond = self._cond_features(cond)
        down, right = self.ul_input_down.stepper(), self.ul_input_right.stepper()
        u_input = self.u_input.stepper() if self.u_input is not None else None
        # The input layers read the rows above (i, j) and the window left of it (and, by rows, the rows above row i).
        margin = down.margin(row_offset=-1).union(right.margin(col_offset=-1))
        if u_input is not None:
            margin = margin.union(u_input.margin(row_offset=-1, whole_rows=True))
        E = self.embedding.embedding_dim if self.embedding is not None else self.in_channels
        canvas = PaddedMap.zeros(B, E + 1, size, margin, down.weight)
        canvas.interior[:, E] = 1.0  # the map of ones; pixels are written in as they become final
        cache = PixelSNAILCache(
            canvas=canvas,
            background=self._background(1)[0],
            ul_input_down=down,
            ul_input_right=right,
            u_input=u_input,
            blocks=[block.stepper(B, size, class_labels, cond) for block in self.blocks],
            output_blocks=[block.stepper(B, size, class_labels, cond) for block in self.output_blocks],
            output=self.output.stepper(),
        )
        if u_input is not None:
            self._vertical_row(cache, 0)  # row 0 of the vertical stream reads no pixel
        return cache

    def forward_step(
        self, cache: PixelSNAILCache, pixel: torch.Tensor, i: Index, j: Index, step: int, variant: None
    ) -> torch.Tensor:
        canvas = cache.canvas
        # down_shift: the input layer's output at (i - 1, j); right_shift: at (i, j - 1) (zero on the first row /
        # column: multiplied by the condition rather than branched on, the same at every position).
        ul = cache.ul_input_down(canvas, i - 1, j) * (i > 0) + cache.ul_input_right(canvas, i, j - 1) * (j > 0)
        background = cache.background_at(i, j, ul.shape[0])
        for block in cache.blocks:
            ul = block(ul, i, j, background)
        for block in cache.output_blocks:
            ul = block.point(ul, i, j)
        return cache.output.point(F.elu(ul))  # (B, num_params)

    def commit(self, cache: PixelSNAILCache, pixel: torch.Tensor, i: Index, j: Index) -> None:
        cache.canvas.write(pixel, i, j, channels=slice(0, pixel.shape[1]))
        background = cache.background_at(i, j, pixel.shape[0])
        for block in cache.blocks:
            if block.attention is not None:
                block.attention.commit(pixel, i, j, background)

    def commit_row(self, cache: PixelSNAILCache, i: Index, variant: None) -> None:
        if cache.u_input is not None:
            self._vertical_row(cache, i + 1)

    def _vertical_row(self, cache: PixelSNAILCache, i: Index) -> None:
        """Row ``i`` of the vertical stream, which reads canvas rows ``< i`` only."""
        if isinstance(i, int) and i == 0:  # the zero row of the down shift (at init_cache; later rows are > 0)
            u = cache.canvas.data.new_zeros(cache.canvas.data.shape[0], self.config.hidden_channels, self.grid_size[1])
        else:
            u = cache.u_input.row(cache.canvas, i - 1)  # (B, F, W), the input layer's row i - 1 shifted down
        for block in cache.blocks:
            u = block.vertical(u, i)

    # diffusers calls it on the state dict of from_pretrained (as for its own deprecated attention blocks).
    def _fix_state_dict_keys_on_load(self, state_dict: dict[str, torch.Tensor]) -> None:
        super()._fix_state_dict_keys_on_load(state_dict)
        _rename_legacy_keys(state_dict, "")


@dataclass(kw_only=True)
class PixelSNAILCache(StepCache):
    """Cached-sampling state of a :class:`PixelSNAIL`."""

    canvas: PaddedMap  # (B, E + 1, H, W): the final pixels and the map of ones, read by the input layers
    background: torch.Tensor  # (2, H, W)
    ul_input_down: ConvStep
    ul_input_right: ConvStep
    u_input: ConvStep | None
    blocks: list[PixelSNAILBlockStep]
    output_blocks: list[GatedResidualStep]
    output: ConvStep

    def background_at(self, i: Index, j: Index, batch_size: int) -> torch.Tensor:
        """Shapes: -> ``(B, 2)``."""
        return pick(pick(self.background, 1, i), 1, j).expand(batch_size, -1)


def _rename_legacy_keys(state_dict: dict[str, torch.Tensor], prefix: str, *args: object) -> None:
    """Rename, in place, the layers of gated residual blocks saved under their former names (``conv1``,
    ``aux_conv``, ``conv2``); a load-state-dict pre-hook (``prefix`` the module's)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        parts = key[len(prefix) :].split(".")
        renamed = [LEGACY_BLOCK_NAMES.get(part, part) for part in parts]
        if renamed != parts:
            state_dict[prefix + ".".join(renamed)] = state_dict.pop(key)


_CIFAR10 = dict(
    sample_size=32,
    in_channels=3,
    num_values=256,
    likelihood="logistic_mixture",
    num_mixtures=10,
    hidden_channels=256,
    num_layers=12,
    num_res_blocks=4,
    kernel_size=3,
    num_heads=1,
    key_channels=16,
    value_channels=128,
    nonlinearity="elu",
    dropout=0.5,
)
register_prior(
    "pixelsnail_cifar10",
    PixelSNAIL,
    "PixelSNAIL on CIFAR-10 (3x32x32, 256 values, 10-component logistic mixture): 12 blocks of 4 gated residual "
    "blocks (256 filters, 2x2 down-right-shifted, elu) and single-head attention with 16-channel keys and 128-channel "
    "values, dropout 0.5: the released model of [1] (h12_noup_smallkey; 2.85 bits/dim).",
    **_CIFAR10,
)
register_prior(
    "pixelsnail_vqvae2_top",
    PixelSNAIL,
    "VQ-VAE-2 top prior (32x32 codes, 512 values): 512 hidden and 2048 residual units, 20 residual blocks in 4 "
    "blocks each ending with 8-head attention, 5x5 filters (3x3 down-right-shifted), 20-block output stack, "
    "dropout 0.1 (the table of [2]; elu as [1]'s released model).",
    sample_size=32,
    in_channels=1,
    num_values=512,
    likelihood="categorical",
    hidden_channels=512,
    residual_channels=2048,
    num_layers=4,
    num_res_blocks=5,
    kernel_size=5,
    num_heads=8,
    key_channels=256,
    value_channels=256,
    num_output_blocks=20,
    nonlinearity="elu",
    dropout=0.1,
)
register_prior(
    "pixelsnail_vqvae2_bottom",
    PixelSNAIL,
    "VQ-VAE-2 bottom prior (64x64 codes, 512 values) conditioned on the top level's 64-dim quantized latents "
    "through cond: 512 hidden and 1024 residual units, 20 residual blocks without attention (with the vertical "
    "stream), 5x5 filters, 20-block conditioning stack, dropout 0.1 (the table of [2]; elu as [1]'s released model).",
    sample_size=64,
    in_channels=1,
    num_values=512,
    likelihood="categorical",
    hidden_channels=512,
    residual_channels=1024,
    num_layers=4,
    num_res_blocks=5,
    kernel_size=5,
    attention=False,
    vertical_stream=True,
    cond_channels=64,
    cond_res_blocks=20,
    nonlinearity="elu",
    dropout=0.1,
)
