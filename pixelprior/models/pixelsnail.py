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
``(k//2 + 1) x (k//2 + 1)`` window ending at it (:class:`~pixelprior.nn.ConvStep`). The input layer reads a copy
of the canvas (with its map of ones) in which each pixel is written once it is final. The vertical stream only
reads rows above (after its one down shift), so when the sampler reaches ``(i, 0)`` its row ``i`` is computed for
every layer (``ConvStep.row``). The attention keeps a :class:`~pixelprior.nn.attention.KeyValueCache`; the key and
value of position ``p - 1`` (which read the raw input there, final only once it has been drawn) are written at step
``p``, then the query of ``p`` attends to the ``p`` cached positions: ``O(p)`` per step and block. ``1x1`` layers
are per pixel; conditioning features are computed once per sampling run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from ..nn import (
    AnchoredConv2d,
    ConditionBias,
    DownRightShiftedConv2d,
    DownShiftedConv2d,
    KeyValueCache,
    bias_at,
    bias_row,
    causal_attention,
    concat_elu,
    down_shift,
    right_shift,
)
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class

NONLINEARITIES = ("concat_elu", "elu")


ConvFactory = Callable[[int, int], AnchoredConv2d]


class GatedResidualBlock(nn.Module):
    """Gated residual block of PixelCNN++ ([3]): ``x + a * sigmoid(b)``.

    ``c = conv1(f(x)) + aux_conv(f(aux))``, ``[a | b] = conv2(dropout(f(c))) + bias``; ``f`` is concat_elu or elu.

    Args:
        channels: ``c``, the width of the stream.
        residual_channels: width of ``conv1``'s output.
        make_conv: builds the block's two convolutions, ``make_conv(in, out)`` (shifted, ``1x1`` or plain).
        aux_channels: width of the auxiliary input (0: none), added after ``conv1`` through a ``1x1`` convolution.
        nonlinearity: ``"concat_elu"`` or ``"elu"``.
        dropout: dropout probability before ``conv2``.
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int (the width of the condition features).

    Shapes:
        x: ``(b, c, h, w)``, aux: ``(b, aux_channels, h, w)`` -> ``(b, c, h, w)``
    """

    def __init__(
        self,
        channels: int,
        residual_channels: int,
        make_conv: ConvFactory,
        aux_channels: int = 0,
        nonlinearity: str = "concat_elu",
        dropout: float = 0.0,
        num_classes: int | None = None,
        cond_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.act = concat_elu if nonlinearity == "concat_elu" else F.elu
        m = 2 if nonlinearity == "concat_elu" else 1  # concat_elu doubles the maps
        self.conv1 = make_conv(m * channels, residual_channels)
        self.aux_conv = AnchoredConv2d(m * aux_channels, residual_channels, 1) if aux_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv2 = make_conv(m * residual_channels, 2 * channels)
        self.cond_bias = ConditionBias(2 * channels, num_classes, cond_channels)

    def forward(
        self,
        x: torch.Tensor,
        aux: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.conv1(self.act(x))
        if self.aux_conv is not None:
            c = c + self.aux_conv(self.act(aux))
        pre = self.conv2(self.dropout(self.act(c)))  # (b, 2c, h, w) = [a | b]
        bias = self.cond_bias(class_labels, cond)
        if bias is not None:
            pre = pre + bias
        a, b = pre.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class AttentionBlock(nn.Module):
    """The attention part of a PixelSNAIL block (figure 2 of [1]): queries, keys, values, and the mix-in.

    Args:
        channels: ``F``.
        input_channels: ``E``, the width of the encoded raw input ``x``.
        key_channels: key (and query) width over all heads.
        value_channels: value width over all heads.
        num_heads: attention heads.
        nonlinearity, dropout, num_classes, cond_channels: as :class:`GatedResidualBlock`.

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
        pointwise: ConvFactory = lambda i, o: AnchoredConv2d(i, o, 1)  # noqa: E731
        self.kv_block = GatedResidualBlock(raw, raw, pointwise, **common)
        self.kv_proj = AnchoredConv2d(raw, key_channels + value_channels, 1)
        self.q_block = GatedResidualBlock(query_in, query_in, pointwise, **common)
        self.q_proj = AnchoredConv2d(query_in, key_channels, 1)
        self.out_block = GatedResidualBlock(channels, channels, pointwise, aux_channels=value_channels, **common)

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
            GatedResidualBlock(channels, residual_channels, right, aux_channels=aux, **common)
            for _ in range(num_res_blocks)
        )
        self.u_blocks = nn.ModuleList(
            GatedResidualBlock(channels, residual_channels, down, **common)
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
            raise ValueError(f"Expected nonlinearity to be one of {NONLINEARITIES}, got {nonlinearity!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout!r}.")
        if not attention and not vertical_stream:
            raise ValueError(
                "Expected vertical_stream=True when attention=False: the down-right-shifted stream alone has a blind "
                "spot (it sees nothing above and to the right of a pixel beyond one column)."
            )
        if cond_res_blocks and cond_channels is None:
            raise ValueError(f"Expected cond_channels for a conditioning stack (cond_res_blocks={cond_res_blocks}).")

        F_, k = hidden_channels, kernel_size
        self.categorical = likelihood == "categorical"
        E = embedding_channels if self.categorical else in_channels
        self.embedding = nn.Embedding(num_values, embedding_channels) if self.categorical else None

        # Conditioning stack: cond (B, cond_channels, H, W) -> features (B, cond_features, H, W), fully observed.
        if cond_res_blocks:
            plain: ConvFactory = lambda i, o: AnchoredConv2d(i, o, cond_kernel_size)  # noqa: E731
            self.cond_input = AnchoredConv2d(cond_channels, cond_hidden_channels, cond_kernel_size)
            self.cond_blocks = nn.ModuleList(
                GatedResidualBlock(cond_hidden_channels, cond_hidden_channels, plain, nonlinearity=nonlinearity)
                for _ in range(cond_res_blocks)
            )
            cond_features = cond_hidden_channels
        else:
            self.cond_input, self.cond_blocks = None, nn.ModuleList()
            cond_features = cond_channels

        # Input layers on [x, ones] (E + 1 maps); their outputs are shifted so that (i, j) sees only pixels before it.
        self.ul_input_down = DownShiftedConv2d(E + 1, F_, (k // 2, k))  # then down_shift: rows i - k//2 .. i - 1
        self.ul_input_right = DownRightShiftedConv2d(E + 1, F_, (k // 2 + 1, k // 2))  # then right_shift
        self.u_input = DownShiftedConv2d(E + 1, F_, (k // 2 + 1, k)) if vertical_stream else None  # then down_shift
        self.blocks = nn.ModuleList(
            PixelSNAILBlock(
                F_,
                residual_channels,
                E,
                num_res_blocks,
                k,
                vertical_stream,
                attention,
                key_channels,
                value_channels,
                num_heads,
                nonlinearity,
                dropout,
                num_classes,
                cond_features,
            )
            for _ in range(num_layers)
        )
        pointwise: ConvFactory = lambda i, o: AnchoredConv2d(i, o, 1)  # noqa: E731
        self.output_blocks = nn.ModuleList(
            GatedResidualBlock(
                F_,
                residual_channels,
                pointwise,
                nonlinearity=nonlinearity,
                dropout=dropout,
                num_classes=num_classes,
                cond_channels=cond_features,
            )
            for _ in range(num_output_blocks)
        )
        self.output = AnchoredConv2d(F_, self.distribution.num_params, 1)

        H, W = self.grid_size
        rows = ((torch.arange(H) - H / 2) / H).view(1, 1, H, 1).expand(1, 1, H, W)
        cols = ((torch.arange(W) - W / 2) / W).view(1, 1, 1, W).expand(1, 1, H, W)
        self.register_buffer("background", torch.cat([rows, cols], 1), persistent=False)  # (1, 2, H, W)

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
    ) -> dict[str, Any]:
        (H, W), B = self.grid_size, batch_size
        dev, dt = self.device, self.dtype
        cond = self._cond_features(cond)

        def maps(c: int) -> torch.Tensor:
            return torch.zeros(B, c, H, W, device=dev, dtype=dt)

        E = self.embedding.embedding_dim if self.embedding is not None else self.in_channels
        canvas = maps(E + 1)
        canvas[:, E] = 1.0  # the map of ones; pixels are copied in as they become final
        blocks = []
        for block in self.blocks:
            attn = block.attention
            blocks.append(
                {
                    "ul": [_ResidualStep(b, B, (H, W), class_labels, cond, buffers=True) for b in block.ul_blocks],
                    "u": [_ResidualStep(b, B, (H, W), class_labels, cond, buffers=True) for b in block.u_blocks],
                    "u_out": [maps(self.config.hidden_channels) for _ in block.u_blocks],  # u after each block
                    "attention": None
                    if attn is None
                    else {
                        "kv_block": _ResidualStep(attn.kv_block, B, (H, W), class_labels, cond),
                        "kv_proj": attn.kv_proj.stepper(),
                        "q_block": _ResidualStep(attn.q_block, B, (H, W), class_labels, cond),
                        "q_proj": attn.q_proj.stepper(),
                        "out_block": _ResidualStep(attn.out_block, B, (H, W), class_labels, cond),
                        "key_channels": attn.key_channels,
                        "cache": KeyValueCache(
                            B, H * W, attn.key_channels, attn.value_channels, attn.num_heads, dev, dt
                        ),
                        "written": 0,  # keys and values of positions 0 .. written - 1 are in the cache
                        "pending": None,  # (p, ul at p before the attention): the key/value input of p, minus x
                    },
                }
            )
        return {
            "canvas": canvas,
            "background": self._background(1)[0],  # (2, H, W)
            "ul_input": (self.ul_input_down.stepper(), self.ul_input_right.stepper()),
            "u_input": self.u_input.stepper() if self.u_input is not None else None,
            "blocks": blocks,
            "rows_done": 0,  # rows 0 .. rows_done - 1 of the vertical stream are computed
            "output_blocks": [_ResidualStep(b, B, (H, W), class_labels, cond) for b in self.output_blocks],
            "output": self.output.stepper(),
        }

    def _advance_rows(self, cache: dict[str, Any], i: int) -> None:
        """Compute rows ``rows_done .. i`` of the vertical stream (they read canvas rows ``< i`` only)."""
        canvas, W = cache["canvas"], self.grid_size[1]
        for r in range(cache["rows_done"], i + 1):
            if r == 0:  # the zero row of the down shift
                u = canvas.new_zeros(canvas.shape[0], self.config.hidden_channels, W)
            else:
                u = cache["u_input"].row(canvas, r - 1)  # (B, F, W), the input layer's row r - 1 shifted down
            for block in cache["blocks"]:
                for step, out in zip(block["u"], block["u_out"], strict=True):
                    u = step.row(u, r)
                    out[:, :, r] = u
        cache["rows_done"] = i + 1

    def step(self, cache: dict[str, Any], h: torch.Tensor, i: int, j: int) -> torch.Tensor:
        H, W = self.grid_size
        p = i * W + j
        canvas, E = cache["canvas"], h.shape[1]
        if p > 0:  # the previous pixel is final: copy it into the input layer's canvas
            pi, pj = divmod(p - 1, W)
            canvas[:, :E, pi, pj] = h[:, :, pi, pj]
        if self.u_input is not None and cache["rows_done"] <= i:
            self._advance_rows(cache, i)

        down, right = cache["ul_input"]
        ul = 0.0
        if i > 0:
            ul = ul + down(canvas, i - 1, j)  # down_shift: the input layer's output at (i - 1, j)
        if j > 0:
            ul = ul + right(canvas, i, j - 1)  # right_shift: its output at (i, j - 1)
        if not torch.is_tensor(ul):  # (0, 0): both shifts read padding
            ul = canvas.new_zeros(canvas.shape[0], self.config.hidden_channels)

        background = cache["background"][:, i, j].expand(h.shape[0], -1)  # (B, 2)
        for block in cache["blocks"]:
            for n, ul_step in enumerate(block["ul"]):
                aux = block["u_out"][n][:, :, i, j] if block["u"] else None
                ul = ul_step.pixel(ul, i, j, aux)
            attn = block["attention"]
            if attn is None:
                continue
            pending = attn["pending"]
            if pending is not None and pending[0] == p - 1 and attn["written"] == p - 1:
                # Key and value of position p - 1: its raw input is final now.
                pi, pj = divmod(p - 1, W)
                raw = torch.cat([h[:, :, pi, pj], pending[1], cache["background"][:, pi, pj].expand_as(background)], 1)
                kv = attn["kv_proj"].point(attn["kv_block"].point(raw, pi, pj))
                attn["cache"].write(p - 1, kv[:, : attn["key_channels"]], kv[:, attn["key_channels"] :])
                attn["written"] = p
            attn["pending"] = (p, ul)
            q = attn["q_proj"].point(attn["q_block"].point(torch.cat([ul, background], 1), i, j))
            mixed = attn["cache"].attend(q, p)  # (B, value_channels), zeros at p = 0
            ul = attn["out_block"].point(ul, i, j, mixed)
        for out_step in cache["output_blocks"]:
            ul = out_step.point(ul, i, j)
        return cache["output"].point(F.elu(ul))  # (B, num_params)


class _ResidualStep:
    """A :class:`GatedResidualBlock` frozen for cached sampling: per pixel, per row or ``1x1`` (point) evaluation.

    With ``buffers=True`` it keeps the input maps of its two convolutions, ``f(x)`` and ``f(c)``, written at each
    evaluated pixel (or row) and read back through the convolutions' windows.
    """

    def __init__(
        self,
        block: GatedResidualBlock,
        batch_size: int,
        grid: tuple[int, int],
        class_labels: torch.Tensor | None,
        cond: torch.Tensor | None,
        buffers: bool = False,
    ) -> None:
        self.act = block.act
        self.conv1, self.conv2 = block.conv1.stepper(), block.conv2.stepper()
        self.aux = block.aux_conv.stepper() if block.aux_conv is not None else None
        w = block.conv1.weight
        self.inp = self.mid = None
        if buffers:
            self.inp = w.new_zeros(batch_size, block.conv1.in_channels, *grid)
            self.mid = w.new_zeros(batch_size, block.conv2.in_channels, *grid)
        # Conditioning bias of the whole grid, computed once (the same module the teacher-forced forward calls).
        self.bias = block.cond_bias(class_labels, cond)  # (B, 2c, H, W), (B, 2c, 1, 1) or None

    def _bias(self, i: int, j: int | None) -> torch.Tensor | float:
        return bias_row(self.bias, i) if j is None else bias_at(self.bias, i, j)

    @staticmethod
    def _gate(x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        a, b = pre.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)

    def point(self, x: torch.Tensor, i: int, j: int, aux: torch.Tensor | None = None) -> torch.Tensor:
        """A ``1x1`` block at ``(i, j)``.

        Shapes:
            x: ``(B, c)``, aux: ``(B, aux_channels)`` -> ``(B, c)``
        """
        c = self.conv1.point(self.act(x))
        if self.aux is not None:
            c = c + self.aux.point(self.act(aux))
        return self._gate(x, self.conv2.point(self.act(c)) + self._bias(i, j))

    def pixel(self, x: torch.Tensor, i: int, j: int, aux: torch.Tensor | None = None) -> torch.Tensor:
        """A shifted block at ``(i, j)``, given its input there; earlier pixels are in the buffers.

        Shapes:
            x: ``(B, c)``, aux: ``(B, aux_channels)`` -> ``(B, c)``
        """
        self.inp[:, :, i, j] = self.act(x)
        c = self.conv1(self.inp, i, j)
        if self.aux is not None:
            c = c + self.aux.point(self.act(aux))
        self.mid[:, :, i, j] = self.act(c)
        return self._gate(x, self.conv2(self.mid, i, j) + self._bias(i, j))

    def row(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """A down-shifted block on row ``i``, given its input row; earlier rows are in the buffers.

        Shapes:
            x: ``(B, c, W)`` -> ``(B, c, W)``
        """
        self.inp[:, :, i] = self.act(x)
        c = self.conv1.row(self.inp, i)
        self.mid[:, :, i] = self.act(c)
        return self._gate(x, self.conv2.row(self.mid, i) + self._bias(i, None))


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
