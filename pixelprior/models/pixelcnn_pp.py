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
* **gated residual block** (:class:`~pixelprior.nn.GatedResidualBlock`): ``c = conv(concat_elu(x))
  [+ nin(concat_elu(aux))]``, ``c = conv(dropout(concat_elu(c)))`` to ``2F`` maps ``[a | b]`` (plus the
  conditioning), ``x + a * sigmoid(b)``. The ``u`` blocks take ``aux`` = the ``u`` skip in the down pass (none
  in the up pass); the ``ul`` blocks take ``aux`` = the ``u`` stream at the same position in the up pass,
  ``[u, ul skip]`` in the down pass;
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
first batch's statistics): ``g`` starts at ``||v||`` (PyTorch's default initialization of the weight), and
the second convolution of every block is scaled by 0.1 at init (the reference's ``init_scale=0.1``), so each
block starts close to the identity; the constructor alone defines the model.
NOTE: unlike [1], any number of channels ``C`` and values ``num_values`` is supported (the reference is
fixed to RGB with 256 values); ``likelihood="categorical"`` is accepted for ``C = 1`` (codes).
NOTE: unlike [1], spatial conditioning (``cond_channels``) is supported, as a bias of every gated block.

Cached sampling: every shifted convolution keeps its input map. The ``u`` stream of every stage depends only on
complete rows, so when row ``i - 1`` is final (``commit_row``) the ``u`` rows that just became computable are computed
with row steps: full-resolution row ``i``; ``H/2`` row ``i / 2`` when ``i`` is even; ``H/4`` row ``i / 4`` when
``4 | i``; up pass then down pass (row 0 of each at ``init_cache``). The ``ul`` stream runs per pixel: at ``(i, j)``
the full-resolution ``ul`` up-pass value; the ``H/2`` stage's position ``(i/2, j/2)`` (up and down pass) when ``i``
and ``j`` are even, which is exactly when every pixel it depends on (those before ``(i, j)``) is final; the ``H/4``
stage's ``(i/4, j/4)`` when ``4 | i`` and ``4 | j``; then the full-resolution down pass, whose transposed
convolutions read low-resolution positions computed at this or an earlier step. How many stages a pixel (a row)
completes is the step's (the row's) variant: its static structure. The input layers read a copy of the canvas (with
its channel of ones) in which each pixel is written when it is final. Each step costs ``O(num_layers)`` small matrix
products (and each row ``O(num_layers)`` row convolutions), independent of ``H W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..nn import (
    AnchoredConv2d,
    ConvStep,
    ConvTransposeStep,
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    GatedResidualBlock,
    GatedResidualStep,
    StridedConvStep,
    StridedDownRightShiftedConv2d,
    StridedDownShiftedConv2d,
    down_shift,
    right_shift,
)
from ..nn import weight_normalized as _weight_norm
from ..nn.stepping import Index, PaddedMap, StepCache, pick
from .modeling_prior import AutoregressivePrior
from .registry import register_prior, register_prior_class

NUM_STAGES = 3  # resolutions H, H/2, H/4: two down- and two upsamplings


def completed_stages(i: int, j: int | None = None) -> int:
    """How many stages a full-resolution pixel ``(i, j)`` (or row ``i``: ``j=None``) completes: stage ``s`` has a
    position there iff ``2**s`` divides ``i`` (and ``j``). At least 1 (the full resolution)."""
    return 1 + sum(i % (1 << s) == 0 and (j is None or j % (1 << s) == 0) for s in range(1, NUM_STAGES))


@dataclass
class StageStep:
    """One resolution of the U-Net in cached sampling: its blocks and the maps its resampling layers read.

    Attributes:
        up_u, up_ul, down_u, down_ul: the gated residual blocks of the stage.
        last_up_u, last_up_ul: the last up-pass value, read by the downsampling to the next stage (stages 0, 1).
        last_down_u, last_down_ul: the last down-pass value, read by the upsampling to the finer stage (stages 1, 2).
        u_up: ``(R + 1, b, f, w)``: the ``u`` stream's up-pass values of the current row (the ``ul`` blocks' aux).
        u_down: ``(n, b, f, w)``: the ``u`` stream's down-pass block outputs of the current row.
    """

    up_u: list[GatedResidualStep]
    up_ul: list[GatedResidualStep]
    down_u: list[GatedResidualStep]
    down_ul: list[GatedResidualStep]
    last_up_u: PaddedMap | None
    last_up_ul: PaddedMap | None
    last_down_u: PaddedMap | None
    last_down_ul: PaddedMap | None
    u_up: torch.Tensor
    u_down: torch.Tensor


@dataclass(kw_only=True)
class PixelCNNPlusPlusCache(StepCache):
    """Cached-sampling state of a :class:`PixelCNNPlusPlus`."""

    canvas: PaddedMap  # (b, c + 1, H, W): the final pixels and the channel of ones, read by the input layers
    u_init: ConvStep
    ul_init_up: ConvStep
    ul_init_left: ConvStep
    stages: list[StageStep]
    downsample_u: list[StridedConvStep]  # stage s -> s + 1
    downsample_ul: list[StridedConvStep]
    upsample_u: list[ConvTransposeStep]  # stage s + 1 -> s
    upsample_ul: list[ConvTransposeStep]
    output: ConvStep


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

        def block(conv: type, aux_channels: int) -> GatedResidualBlock:
            return GatedResidualBlock(
                Fh,
                conv,
                aux_channels=aux_channels,
                dropout=dropout,
                weight_norm=wn,
                out_scale=0.1,  # the reference's init_scale=0.1: each block starts near the identity
                num_classes=num_classes,
                cond_channels=cond_channels,
            )

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
    ) -> PixelCNNPlusPlusCache:
        (H, W), C, B = self.grid_size, self.in_channels, batch_size
        u_init, ul_init_up, ul_init_left = (
            self.u_init.stepper(),
            self.ul_init_up.stepper(),
            self.ul_init_left.stepper(),
        )
        # The input layers read rows i - 2 .. i - 1 (u, by rows) and the window above and left of (i, j) (ul).
        margin = u_init.margin(row_offset=-1, whole_rows=True).union(
            ul_init_up.margin(row_offset=-1), ul_init_left.margin(col_offset=-1)
        )
        canvas = PaddedMap.zeros(B, C + 1, (H, W), margin, u_init.weight)
        canvas.interior[:, C] = 1.0  # the channel of ones; channels < C are written as pixels become final
        cache = PixelCNNPlusPlusCache(
            canvas=canvas,
            u_init=u_init,
            ul_init_up=ul_init_up,
            ul_init_left=ul_init_left,
            stages=[],
            downsample_u=[m.stepper() for m in self.downsample_u],
            downsample_ul=[m.stepper() for m in self.downsample_ul],
            upsample_u=[m.stepper() for m in self.upsample_u],
            upsample_ul=[m.stepper() for m in self.upsample_ul],
            output=self.output.stepper(),
        )
        conds = self._stage_conds(cond)
        cache.stages = [self._stage_step(cache, s, B, class_labels, conds[s]) for s in range(NUM_STAGES)]
        self._u_rows(cache, 0, NUM_STAGES)  # row 0 of every stage reads no pixel
        return cache

    def _stage_step(
        self,
        cache: PixelCNNPlusPlusCache,
        s: int,
        batch_size: int,
        class_labels: torch.Tensor | None,
        cond: torch.Tensor | None,
    ) -> StageStep:
        """The blocks and maps of stage ``s`` (``cond`` at its resolution)."""
        (H, W), Fh, like = self.grid_size, self.config.hidden_channels, cache.canvas.data
        size = (H >> s, W >> s)

        def blocks(stages: nn.ModuleList) -> list[GatedResidualStep]:
            return [block.stepper(batch_size, size, class_labels, cond) for block in stages[s]]

        def read_by(margin) -> PaddedMap:
            return PaddedMap.zeros(batch_size, Fh, size, margin, like)

        last_up, first_down = s < NUM_STAGES - 1, s > 0
        return StageStep(
            up_u=blocks(self.up_u),
            up_ul=blocks(self.up_ul),
            down_u=blocks(self.down_u),
            down_ul=blocks(self.down_ul),
            last_up_u=read_by(cache.downsample_u[s].margin(whole_rows=True)) if last_up else None,
            last_up_ul=read_by(cache.downsample_ul[s].margin()) if last_up else None,
            last_down_u=read_by(cache.upsample_u[s - 1].row_margin()) if first_down else None,
            last_down_ul=read_by(cache.upsample_ul[s - 1].margin()) if first_down else None,
            u_up=like.new_zeros(len(self.up_u[s]) + 1, batch_size, Fh, size[1]),
            u_down=like.new_zeros(len(self.down_u[s]), batch_size, Fh, size[1]),
        )

    def step_variant(self, i: int, j: int) -> int:
        return completed_stages(i, j)

    def row_variant(self, i: int) -> int:
        # Row i final: the u rows of full-resolution row i + 1 (none after the last row).
        return completed_stages(i + 1) if i + 1 < self.grid_size[0] else 0

    def commit(self, cache: PixelCNNPlusPlusCache, pixel: torch.Tensor, i: Index, j: Index) -> None:
        cache.canvas.write(pixel, i, j, channels=slice(0, self.in_channels))

    def commit_row(self, cache: PixelCNNPlusPlusCache, i: Index, variant: int) -> None:
        self._u_rows(cache, i + 1, variant)

    def _u_rows(self, cache: PixelCNNPlusPlusCache, i: Index, stages: int) -> None:
        """The ``u`` rows that read full-resolution rows ``< i`` only: row ``i >> s`` of the first ``stages`` stages
        (those whose row ``i`` completes); up pass, then down pass."""
        ups: list[list[torch.Tensor]] = []
        for s in range(stages):
            stage, r = cache.stages[s], i >> s
            if s > 0:
                u = cache.downsample_u[s - 1].row(cache.stages[s - 1].last_up_u, r)
            elif isinstance(i, int) and i == 0:  # the down shift's zero row (at init_cache; later rows are > 0)
                u = cache.canvas.data.new_zeros(stage.u_up.shape[1:])
            else:
                u = cache.u_init.row(cache.canvas, i - 1)  # down_shift: row i is the 2x3 convolution's row i - 1
            ups.append([u])
            for block in stage.up_u:
                u = block.row(u, r)
                ups[s].append(u)
            if stage.last_up_u is not None:
                stage.last_up_u.write_row(u, r)
        for s in reversed(range(stages)):
            stage, r, skips = cache.stages[s], i >> s, list(ups[s])
            stage.u_up.copy_(torch.stack(skips))
            if s == NUM_STAGES - 1:
                u = skips.pop()
            else:  # reads stage s + 1 at row r // 2: computed at this row or an earlier one
                u = cache.upsample_u[s].row(cache.stages[s + 1].last_down_u, r, parity=int(s == stages - 1))
            for k, block in enumerate(stage.down_u):
                u = block.row(u, r, skips.pop())
                stage.u_down[k] = u
            if stage.last_down_u is not None:
                stage.last_down_u.write_row(u, r)

    def forward_step(
        self, cache: PixelCNNPlusPlusCache, pixel: torch.Tensor, i: Index, j: Index, step: int, variant: int
    ) -> torch.Tensor:
        canvas = cache.canvas
        # down_shift of the 1x3 convolution of the row above, right_shift of the 2x1 one (zero on the first row /
        # column: multiplied by the condition rather than branched on, the same at every position).
        ul = cache.ul_init_up(canvas, i - 1, j) * (i > 0) + cache.ul_init_left(canvas, i, j - 1) * (j > 0)
        ups: list[list[torch.Tensor]] = []
        for s in range(variant):  # the stages whose position (i >> s, j >> s) this pixel completes
            stage, r, c = cache.stages[s], i >> s, j >> s
            if s > 0:
                ul = cache.downsample_ul[s - 1](cache.stages[s - 1].last_up_ul, r, c)
            ups.append([ul])
            for k, block in enumerate(stage.up_ul):
                ul = block.pixel(ul, r, c, pick(stage.u_up[k + 1], 2, c))
                ups[s].append(ul)
            if stage.last_up_ul is not None:
                stage.last_up_ul.write(ul, r, c)
        for s in reversed(range(variant)):
            stage, r, c, skips = cache.stages[s], i >> s, j >> s, ups[s]
            if s == NUM_STAGES - 1:
                ul = skips.pop()
            else:  # reads stage s + 1 at (r // 2, c // 2): computed at this step or an earlier one
                ul = cache.upsample_ul[s](cache.stages[s + 1].last_down_ul, r, c)
            for k, block in enumerate(stage.down_ul):
                ul = block.pixel(ul, r, c, torch.cat([pick(stage.u_down[k], 2, c), skips.pop()], dim=1))
            if stage.last_down_ul is not None:
                stage.last_down_ul.write(ul, r, c)
        return cache.output.point(F.elu(ul))  # (b, num_params)


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
