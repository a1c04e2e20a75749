"""PixelCNN++ [1]: down- and down-right-shifted streams of gated residual blocks in a U-Net, logistic mixtures.

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with Discretized
    Logistic Mixture Likelihood and Other Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517
    Reference code: https://github.com/openai/pixel-cnn (``pixel_cnn_pp/model.py``, ``nn.py``).

Architecture (section 2 and figure 2 of [1]), ``F = hidden_channels``, ``R = num_layers``:

* the input ``(B, C, H, W)`` gets a channel of ones, so that the zero padding of the convolutions is told
  apart from the image;
* two streams of ``F`` maps: ``u`` (down-shifted, ``2 x 3`` kernels; at row ``i`` it has seen rows ``< i``)
  starts as ``down_shift(conv_2x3(x))``; ``ul`` (down-right-shifted, ``2 x 2`` kernels; at ``(i, j)`` it has
  seen every pixel before ``(i, j)`` in raster order) starts as ``down_shift(conv_1x3(x)) +
  right_shift(conv_2x1(x))``. These are the only shifts: later layers read their own position;
* **up pass**: three stages (``H x W``, ``H/2 x W/2``, ``H/4 x W/4``) of ``R`` gated residual blocks per
  stream, separated by stride-2 shifted convolutions; every stream value is kept (``3R + 3`` per stream);
* **down pass**: ``R``, then ``R + 1`` and ``R + 1`` gated residual blocks at ``H/4``, ``H/2``, ``H``,
  separated by stride-2 transposed shifted convolutions; every block consumes (pops) one kept up-pass value
  of its stream and resolution (the U-Net skip connections);
* **gated residual block** (``GatedResNet``): ``c = conv(concat_elu(x)) [+ nin(concat_elu(aux))]``,
  ``c = conv(dropout(concat_elu(c)))`` to ``2F`` maps ``[a | b]`` (plus the conditioning), ``x + a *
  sigmoid(b)``. The ``u`` blocks take ``aux`` = the ``u`` skip in the down pass (none in the up pass); the ``ul``
  blocks take ``aux`` = the ``u`` stream at the same position in the up pass, ``[u, ul skip]`` in the down pass;
* output: ``nin(elu(ul))`` to ``distribution.num_params`` maps (the discretized logistic mixture of
  :mod:`pixelprior.distributions.logistic_mixture`, all channels of a pixel jointly).

``concat_elu(x) = elu([x, -x])`` doubles the maps. ``nin`` is a ``1 x 1`` convolution.

**Causality at low resolution.** A ``u`` value at row ``i'`` of stage ``l`` (stride ``s = 2**l``) depends on
data rows ``< s i'``; a ``ul`` value at ``(i', j')`` on data before ``(s i', s j')`` in raster order. The
strided convolutions keep this (output ``(i', j')`` reads ``(s i' - 1 .. s i', s j' - 1 .. s j')`` of the
finer stage), and so do the transposed ones: the ``ul`` one maps ``(r, c)`` to ``(r // 2, c // 2)``, the ``u``
one reads row ``r // 2`` only (see :mod:`pixelprior.nn.shifted`).

**Receptive field.** No region of earlier pixels is out of reach at every depth (the blind spot of PixelCNN),
but the field is finite, as in [1]: on odd rows only the full-resolution chains reach the current row (``ul``,
to the left) and the row above (``u``, to the right), over ``4 R + 2`` pixels (22 for ``R = 5``; the coarse
stages only see rows ``< 2 i'`` and the first ``2 j'`` pixels of row ``2 i'``). On grids at most ``4 R + 3``
pixels wide (8 x 8 with ``R >= 2``) every position depends on every earlier one.

**Conditioning**: a class label (``num_classes``, the reference's one-hot ``h`` times a matrix, here an
embedding) and a spatial map (``cond_channels``, ``1 x 1`` convolution) are added to the ``2F`` gate
pre-activations of every block (:class:`~pixelprior.nn.ConditionBias`, one per block). The base class resizes
``cond`` to ``H x W``; the ``H/2`` and ``H/4`` stages read it average-pooled by 2 and 4.

**Weight normalization** (Salimans & Kingma 2016, as in [1]): with ``weight_norm=True`` (default) every
convolution is ``g * v / ||v||`` per output map (:func:`pixelprior.nn.weight_norm.weight_norm`: torch's
``parametrizations.weight_norm`` layout, read in one call), with the
reference's ``g`` parameters, so the paper's CIFAR-10 model has exactly the reference's 53,659,080 parameters.

Einops letters: ``b`` batch, ``c`` data channels, ``f`` hidden maps, ``(two f)`` the gate maps ``[a | b]``,
``h w`` rows and columns of a stage.

NOTE: unlike [1], there is no data-dependent initialization (the reference sets ``g`` and the biases from the
first batch's statistics, with ``init_scale=0.1`` for the second convolution of every block): every weight has
PyTorch's default initialization and ``g`` starts at ``||v||``, as in the PyTorch port
(https://github.com/pclucas14/pixel-cnn-pp); the constructor alone defines the model. Scaling the second
convolutions by 0.1 under this initialization would scale ``v`` too and train worse (see ``GatedResNet``).
NOTE: unlike [1], any number of channels ``C`` and values ``num_values`` is supported (the reference is
fixed to RGB with 256 values); ``likelihood="categorical"`` is accepted for ``C = 1`` (codes).
NOTE: unlike [1], spatial conditioning (``cond_channels``) is supported, as a bias of every gated block.

Cached sampling (``init_cache`` / ``step``): every shifted convolution keeps its input map. The ``u`` stream
of every stage depends only on complete rows, so when the sampler reaches ``(i, 0)`` the ``u`` rows that just
became computable are computed with row steps: full-resolution row ``i``; ``H/2`` row ``i / 2`` when ``i`` is
even; ``H/4`` row ``i / 4`` when ``4 | i``; up pass then down pass. The ``ul`` stream runs per pixel: at
``(i, j)`` the full-resolution ``ul`` up-pass value; the ``H/2`` stage's position ``(i/2, j/2)`` (up and down
pass) when ``i`` and ``j`` are even, which is exactly when every pixel it depends on (those before
``(i, j)``) is final; the ``H/4`` stage's ``(i/4, j/4)`` when ``4 | i`` and ``4 | j``; then the
full-resolution down pass, whose transposed convolutions read low-resolution positions computed at this or an
earlier step. Each step costs ``O(num_layers)`` small matrix products (and each row start ``O(num_layers)``
row convolutions), independent of ``H W``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..nn import (
    AnchoredConv2d,
    ConditionBias,
    ConvStep,
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    StridedDownRightShiftedConv2d,
    StridedDownShiftedConv2d,
    bias_at,
    bias_row,
    concat_elu,
    down_shift,
    right_shift,
)
from ..nn.weight_norm import weight_norm
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class

NUM_STAGES = 3  # resolutions H, H/2, H/4: two down- and two upsamplings


def _weight_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Weight-normalize ``module`` per output map (dim 1 of a transposed convolution's weight, 0 otherwise)."""
    if not enabled:
        return module
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    return weight_norm(module, dim=dim)


def _point(step: ConvStep, v: torch.Tensor) -> torch.Tensor:
    """A ``1 x 1`` convolution step on one row.

    Shapes:
        v: ``(b, in, w)`` -> ``(b, out, w)``
    """
    return step.point(v.transpose(1, 2)).transpose(1, 2)


@dataclass
class _BlockCache:
    """Cached-sampling state of one :class:`GatedResNet`: frozen weights, input maps, conditioning bias."""

    conv_in: ConvStep
    link: ConvStep | None
    conv_out: ConvStep
    inputs: torch.Tensor  # (b, (two f), h, w): concat_elu of the block's input, read by conv_in
    hidden: torch.Tensor  # (b, (two f), h, w): concat_elu of conv_in's output (+ link), read by conv_out
    bias: torch.Tensor | None  # (b, (two f), h, w), (b, (two f), 1, 1) or None


class GatedResNet(nn.Module):
    """Gated residual block of [1]: ``x + a * sigmoid(b)``, ``[a | b] = conv(concat_elu(conv(concat_elu(x))
    + nin(concat_elu(aux))))`` (+ conditioning), with dropout before the second convolution.

    Args:
        channels: ``F``, maps of the stream.
        conv: :class:`~pixelprior.nn.DownShiftedConv2d` (``u`` stream, ``2 x 3``) or
            :class:`~pixelprior.nn.DownRightShiftedConv2d` (``ul`` stream, ``2 x 2``).
        aux_channels: maps of the auxiliary input ``aux`` (0: none).
        dropout: dropout probability.
        weight_norm: weight-normalize the convolutions.
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.

    Shapes:
        x: ``(b, f, h, w)``, aux: ``(b, aux_channels, h, w)``, class_labels: ``(b,)``,
        cond: ``(b, cond_channels, h, w)`` -> ``(b, f, h, w)`` (the residual included)
    """

    def __init__(
        self,
        channels: int,
        conv: type[DownShiftedConv2d] | type[DownRightShiftedConv2d],
        aux_channels: int = 0,
        dropout: float = 0.5,
        weight_norm: bool = True,
        num_classes: int | None = None,
        cond_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.conv_in = _weight_norm(conv(2 * channels, channels), weight_norm)
        self.link = _weight_norm(AnchoredConv2d(2 * aux_channels, channels, 1), weight_norm) if aux_channels else None
        self.dropout = nn.Dropout(dropout)
        # PyTorch's default initialization, not scaled by the reference's init_scale=0.1: scaling the weight
        # before weight norm scales v as well as g (g = ||v||), so Adam's fixed-size steps turn v's direction and
        # g 10x faster; 600 steps on the digits then reach 1.287 test bits/dim instead of 1.227 (the port: 1.220).
        self.conv_out = _weight_norm(conv(2 * channels, 2 * channels), weight_norm)
        self.cond_bias = ConditionBias(2 * channels, num_classes, cond_channels)

    def forward(
        self,
        x: torch.Tensor,
        aux: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.conv_in(concat_elu(x))  # (b, f, h, w)
        if self.link is not None:
            c = c + self.link(concat_elu(aux))
        c = self.conv_out(self.dropout(concat_elu(c)))  # (b, (two f), h, w)
        bias = self.cond_bias(class_labels, cond)
        if bias is not None:
            c = c + bias
        a, b = c.chunk(2, dim=1)  # (b, f, h, w) each
        return x + a * torch.sigmoid(b)

    # ------------------------------------------------------------------------------ cached sampling
    def init_cache(
        self, batch_size: int, size: tuple[int, int], class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> _BlockCache:
        """Frozen weights, empty input maps of this block's stage (``size``) and its conditioning bias."""
        weight = self.conv_out.weight
        maps = (batch_size, weight.shape[1], *size)  # (b, (two f), h, w)
        return _BlockCache(
            conv_in=self.conv_in.stepper(),
            link=None if self.link is None else self.link.stepper(),
            conv_out=self.conv_out.stepper(),
            inputs=weight.new_zeros(maps),
            hidden=weight.new_zeros(maps),
            bias=self.cond_bias(class_labels, cond),
        )

    def step(self, cache: _BlockCache, x: torch.Tensor, aux: torch.Tensor | None, i: int, j: int) -> torch.Tensor:
        """The block at one position (eval mode), reading earlier positions from the cache's input maps.

        Shapes:
            x: ``(b, f)``, aux: ``(b, aux_channels)`` -> ``(b, f)``
        """
        cache.inputs[:, :, i, j] = concat_elu(x)
        c = cache.conv_in(cache.inputs, i, j)  # (b, f)
        if cache.link is not None:
            c = c + cache.link.point(concat_elu(aux))
        cache.hidden[:, :, i, j] = concat_elu(c)
        c = cache.conv_out(cache.hidden, i, j) + bias_at(cache.bias, i, j)  # (b, (two f))
        a, b = c.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)

    def step_row(self, cache: _BlockCache, x: torch.Tensor, aux: torch.Tensor | None, i: int) -> torch.Tensor:
        """The block on row ``i`` (eval mode), for the ``u`` stream, which only reads complete rows.

        Shapes:
            x: ``(b, f, w)``, aux: ``(b, aux_channels, w)`` -> ``(b, f, w)``
        """
        cache.inputs[:, :, i] = concat_elu(x)
        c = cache.conv_in.row(cache.inputs, i)  # (b, f, w)
        if cache.link is not None:
            c = c + _point(cache.link, concat_elu(aux))
        cache.hidden[:, :, i] = concat_elu(c)
        c = cache.conv_out.row(cache.hidden, i) + bias_row(cache.bias, i)  # (b, (two f), w)
        a, b = c.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


@register_prior_class
class PixelCNNPlusPlus(AutoregressivePrior):
    """PixelCNN++ of Salimans et al. 2017: a U-Net of gated residual blocks on two shifted streams.

    Args:
        sample_size: ``int`` or ``(H, W)``; both divisible by 4 (two downsamplings by 2).
        in_channels: data channels ``C``.
        num_values: values per channel.
        hidden_channels: ``F``, the maps of each stream (``nr_filters`` of the reference; 160 in [1]).
        num_layers: ``R``, gated residual blocks per stage and stream (``nr_resnet``; 5 in [1]); the network
            has ``6 R + 2`` blocks per stream.
        num_mixtures: logistic mixture components (``nr_logistic_mix``; 10 in [1]); unused with
            ``likelihood="categorical"``.
        dropout: dropout probability inside the gated blocks (0.5 in [1]).
        weight_norm: weight-normalize every convolution, as [1].
        num_classes: class-conditional when an int.
        cond_channels: spatially conditioned when an int.
        likelihood: ``"logistic_mixture"`` (default) or ``"categorical"`` (``C = 1`` only: the categorical
            likelihood orders the channels of a pixel, which whole-pixel streams cannot provide).

    Shapes:
        x: ``(B, C, H, W)`` long -> params ``(B, num_params, H, W)``
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = 32,
        in_channels: int = 3,
        num_values: int = 256,
        hidden_channels: int = 160,
        num_layers: int = 5,
        num_mixtures: int = 10,
        dropout: float = 0.5,
        weight_norm: bool = True,
        num_classes: int | None = None,
        cond_channels: int | None = None,
        likelihood: str = "logistic_mixture",
    ) -> None:
        super().__init__()
        self._init_prior(sample_size, in_channels, num_values, num_classes, cond_channels, likelihood, num_mixtures)
        if likelihood == "categorical" and in_channels > 1:
            raise ValueError(
                f"Expected likelihood='logistic_mixture' for in_channels={in_channels} > 1: the categorical "
                "likelihood draws the channels of a pixel one after another (R -> G -> B), but PixelCNN++'s streams "
                "see whole pixels only, so they cannot condition G on R. Use likelihood='categorical' for "
                "in_channels=1 (e.g. VQ-VAE codes)."
            )
        H, W = self.grid_size
        if H % 4 or W % 4:
            raise ValueError(
                f"Expected a sample_size divisible by 4 (PixelCNN++ downsamples twice by 2), got {(H, W)}."
            )
        if not isinstance(hidden_channels, int) or hidden_channels < 1:
            raise ValueError(f"Expected hidden_channels to be an int >= 1, got {hidden_channels!r}.")
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"Expected num_layers to be an int >= 0, got {num_layers!r}.")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout!r}.")
        Fh, R, wn = hidden_channels, num_layers, weight_norm

        def block(conv: type, aux_channels: int) -> GatedResNet:
            return GatedResNet(Fh, conv, aux_channels, dropout, wn, num_classes, cond_channels)

        def stage(conv: type, aux_channels: int, n: int) -> nn.ModuleList:
            return nn.ModuleList(block(conv, aux_channels) for _ in range(n))

        # Input layers, on the data plus the channel of ones.
        self.u_init = _weight_norm(DownShiftedConv2d(in_channels + 1, Fh, (2, 3)), wn)
        self.ul_init_up = _weight_norm(DownShiftedConv2d(in_channels + 1, Fh, (1, 3)), wn)  # the row above
        self.ul_init_left = _weight_norm(DownRightShiftedConv2d(in_channels + 1, Fh, (2, 1)), wn)  # the column left
        # Up pass: stages H, H/2, H/4; down pass: stages H/4, H/2, H (indexed by stage here, run in reverse).
        DS, DRS = DownShiftedConv2d, DownRightShiftedConv2d
        self.up_u = nn.ModuleList(stage(DS, 0, R) for _ in range(NUM_STAGES))
        self.up_ul = nn.ModuleList(stage(DRS, Fh, R) for _ in range(NUM_STAGES))
        self.down_u = nn.ModuleList(stage(DS, Fh, R + (s < NUM_STAGES - 1)) for s in range(NUM_STAGES))
        self.down_ul = nn.ModuleList(stage(DRS, 2 * Fh, R + (s < NUM_STAGES - 1)) for s in range(NUM_STAGES))
        # downsample_*[s]: stage s -> s + 1; upsample_*[s]: stage s + 1 -> s.
        n = NUM_STAGES - 1
        self.downsample_u = nn.ModuleList(_weight_norm(StridedDownShiftedConv2d(Fh, Fh), wn) for _ in range(n))
        self.downsample_ul = nn.ModuleList(_weight_norm(StridedDownRightShiftedConv2d(Fh, Fh), wn) for _ in range(n))
        self.upsample_u = nn.ModuleList(_weight_norm(DownShiftedConvTranspose2d(Fh, Fh), wn) for _ in range(n))
        self.upsample_ul = nn.ModuleList(_weight_norm(DownRightShiftedConvTranspose2d(Fh, Fh), wn) for _ in range(n))
        self.output = _weight_norm(AnchoredConv2d(Fh, self.distribution.num_params, 1), wn)

    # ------------------------------------------------------------------------------ the network
    @staticmethod
    def _stage_conds(cond: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The spatial condition of each stage: the full grid, then average-pooled by 2 and by 4.

        Shapes:
            cond: ``(b, cond_channels, H, W)`` -> ``[(b, cond_channels, H / 2**s, W / 2**s)]``
        """
        if cond is None:
            return [None] * NUM_STAGES
        return [cond if s == 0 else F.avg_pool2d(cond, 2**s) for s in range(NUM_STAGES)]

    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        conds = self._stage_conds(cond)
        x = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)  # (b, c + 1, H, W): ones mark the image
        u = down_shift(self.u_init(x))  # (b, f, H, W)
        ul = down_shift(self.ul_init_up(x)) + right_shift(self.ul_init_left(x))
        us, uls = [u], [ul]  # every up-pass value, popped by the down pass
        for s in range(NUM_STAGES):
            if s > 0:
                u, ul = self.downsample_u[s - 1](u), self.downsample_ul[s - 1](ul)  # (b, f, H / 2**s, W / 2**s)
                us.append(u)
                uls.append(ul)
            for u_block, ul_block in zip(self.up_u[s], self.up_ul[s], strict=True):
                u = u_block(u, None, class_labels, conds[s])
                ul = ul_block(ul, u, class_labels, conds[s])
                us.append(u)
                uls.append(ul)
        u, ul = us.pop(), uls.pop()
        for s in reversed(range(NUM_STAGES)):
            if s < NUM_STAGES - 1:
                u, ul = self.upsample_u[s](u), self.upsample_ul[s](ul)  # (b, f, H / 2**s, W / 2**s)
            for u_block, ul_block in zip(self.down_u[s], self.down_ul[s], strict=True):
                u = u_block(u, us.pop(), class_labels, conds[s])
                ul = ul_block(ul, torch.cat([u, uls.pop()], dim=1), class_labels, conds[s])
        return self.output(F.elu(ul))  # (b, num_params, H, W)

    # ------------------------------------------------------------------------------ cached sampling
    def init_cache(
        self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> dict[str, Any]:
        (H, W), Fh, C = self.grid_size, self.config.hidden_channels, self.in_channels
        conds = self._stage_conds(cond)
        sizes = [(H >> s, W >> s) for s in range(NUM_STAGES)]

        def maps(s: int) -> torch.Tensor:
            return torch.zeros(batch_size, Fh, *sizes[s], device=self.device, dtype=self.dtype)

        def blocks(stages: nn.ModuleList) -> list[list[_BlockCache]]:
            return [
                [b.init_cache(batch_size, sizes[s], class_labels, conds[s]) for b in stage]
                for s, stage in enumerate(stages)
            ]

        canvas = torch.zeros(batch_size, C + 1, H, W, device=self.device, dtype=self.dtype)
        canvas[:, C] = 1.0  # the channel of ones; channels < C are copied from h as pixels become final
        return {
            "canvas": canvas,
            "init": (self.u_init.stepper(), self.ul_init_up.stepper(), self.ul_init_left.stepper()),
            "up_u": blocks(self.up_u),
            "up_ul": blocks(self.up_ul),
            "down_u": blocks(self.down_u),
            "down_ul": blocks(self.down_ul),
            "downsample_u": [m.stepper() for m in self.downsample_u],
            "downsample_ul": [m.stepper() for m in self.downsample_ul],
            "upsample_u": [m.stepper() for m in self.upsample_u],
            "upsample_ul": [m.stepper() for m in self.upsample_ul],
            # Inputs of the strided convolutions (last up-pass value of stages 0, 1) and of the transposed
            # ones (last down-pass value of stages 1, 2), per stream.
            "last_up_u": [maps(s) for s in range(NUM_STAGES - 1)],
            "last_up_ul": [maps(s) for s in range(NUM_STAGES - 1)],
            "last_down_u": [None] + [maps(s) for s in range(1, NUM_STAGES)],
            "last_down_ul": [None] + [maps(s) for s in range(1, NUM_STAGES)],
            # The current row of every u value of each stage, read by the ul blocks at that row:
            # "u_rows"[s] = (up-pass values [R + 1] x (b, f, w), down-pass block outputs [R or R + 1]).
            "u_rows": [None] * NUM_STAGES,
            "output": self.output.stepper(),
            "row": -1,
        }

    def _advance_rows(self, cache: dict[str, Any], i: int) -> None:
        """Compute the ``u`` rows that become computable when full-resolution rows ``< i`` are final.

        Full-resolution row ``i``, ``H/2`` row ``i / 2`` (``i`` even) and ``H/4`` row ``i / 4`` (``4 | i``): up pass,
        then down pass.
        """
        B, W, Fh = cache["canvas"].shape[0], self.grid_size[1], self.config.hidden_channels
        rows = [i >> s if i % (1 << s) == 0 else None for s in range(NUM_STAGES)]  # the row of each stage, or None
        ups: list[list[torch.Tensor]] = [[] for _ in range(NUM_STAGES)]
        for s, r in enumerate(rows):
            if r is None:
                break
            if s == 0:
                # down_shift: row 0 is zero, row r is the 2x3 convolution's row r - 1.
                u = cache["init"][0].row(cache["canvas"], r - 1) if r > 0 else cache["canvas"].new_zeros(B, Fh, W)
            else:
                u = cache["downsample_u"][s - 1].row(cache["last_up_u"][s - 1], r)
            ups[s].append(u)
            for block, state in zip(self.up_u[s], cache["up_u"][s], strict=True):
                u = block.step_row(state, u, None, r)
                ups[s].append(u)
            if s < NUM_STAGES - 1:
                cache["last_up_u"][s][:, :, r] = u
        for s in reversed(range(NUM_STAGES)):
            r = rows[s]
            if r is None:
                continue
            skips = list(ups[s])
            if s == NUM_STAGES - 1:
                u = skips.pop()
            else:
                u = cache["upsample_u"][s].row(cache["last_down_u"][s + 1], r)
            downs = []
            for block, state in zip(self.down_u[s], cache["down_u"][s], strict=True):
                u = block.step_row(state, u, skips.pop(), r)
                downs.append(u)
            if s > 0:
                cache["last_down_u"][s][:, :, r] = u
            cache["u_rows"][s] = (ups[s], downs)

    def step(self, cache: dict[str, Any], h: torch.Tensor, i: int, j: int) -> torch.Tensor:
        C, canvas = self.in_channels, cache["canvas"]
        if cache["row"] != i:
            if i < cache["row"]:
                raise ValueError(f"Expected steps in raster order, got row {i} after row {cache['row']}.")
            if i > 0:
                canvas[:, :C, i - 1] = h[:, :, i - 1]  # the previous row is final
            self._advance_rows(cache, i)
            cache["row"] = i
        if j > 0:
            canvas[:, :C, i, j - 1] = h[:, :, i, j - 1]  # the pixel left of (i, j) is final
        _, init_up, init_left = cache["init"]
        ul = canvas.new_zeros(canvas.shape[0], self.config.hidden_channels)
        if i > 0:
            ul = ul + init_up(canvas, i - 1, j)  # down_shift of the 1x3 convolution of the row above
        if j > 0:
            ul = ul + init_left(canvas, i, j - 1)  # right_shift of the 2x1 convolution
        # Stages whose position this pixel completes: s such that 2**s divides i and j.
        stages = [s for s in range(NUM_STAGES) if i % (1 << s) == 0 and j % (1 << s) == 0]
        ups: list[list[torch.Tensor]] = [[] for _ in range(NUM_STAGES)]
        for s in stages:
            r, c = i >> s, j >> s
            if s > 0:
                ul = cache["downsample_ul"][s - 1](cache["last_up_ul"][s - 1], r, c)
            u_up = cache["u_rows"][s][0]
            ups[s].append(ul)
            for k, (block, state) in enumerate(zip(self.up_ul[s], cache["up_ul"][s], strict=True)):
                ul = block.step(state, ul, u_up[k + 1][:, :, c], r, c)
                ups[s].append(ul)
            if s < NUM_STAGES - 1:
                cache["last_up_ul"][s][:, :, r, c] = ul
        for s in reversed(range(NUM_STAGES)):
            r, c = i >> s, j >> s
            if s not in stages:
                continue
            skips = ups[s]
            if s == NUM_STAGES - 1:
                ul = skips.pop()
            else:
                # Reads stage s + 1 at (r // 2, c // 2): computed at this step or an earlier one.
                ul = cache["upsample_ul"][s](cache["last_down_ul"][s + 1], r, c)
            u_down = cache["u_rows"][s][1]
            for k, (block, state) in enumerate(zip(self.down_ul[s], cache["down_ul"][s], strict=True)):
                ul = block.step(state, ul, torch.cat([u_down[k][:, :, c], skips.pop()], dim=1), r, c)
            if s > 0:
                cache["last_down_ul"][s][:, :, r, c] = ul
        return cache["output"].point(F.elu(ul))  # (b, num_params)


register_prior(
    "pixelcnn_pp_cifar10",
    PixelCNNPlusPlus,
    "PixelCNN++ on CIFAR-10 (3x32x32, 256 values), the paper's 53.7M-parameter model: 5 gated resnets per stage, "
    "160 filters, 10 logistic mixtures, dropout 0.5, weight normalization.",
    sample_size=32,
    in_channels=3,
    num_values=256,
    hidden_channels=160,
    num_layers=5,
    num_mixtures=10,
    dropout=0.5,
)
register_prior(
    "pixelcnn_pp_mnist",
    PixelCNNPlusPlus,
    "PixelCNN++ on 8-bit MNIST digits (1x28x28, 256 values): 2 gated resnets per stage, 32 filters, 10 logistic "
    "mixtures, dropout 0.5, 0.97M parameters (a small config for the built-in digits, trainable on a CPU; [1] "
    "reports no MNIST model).",
    sample_size=28,
    in_channels=1,
    num_values=256,
    hidden_channels=32,
    num_layers=2,
    num_mixtures=10,
    dropout=0.5,
)
