"""Scoring images with a prior: how typical each image is, for out-of-distribution detection.

* **likelihood**: bits/dim and nats per image, and per-pixel bits (:meth:`AutoregressivePrior.log_prob_map`);
* **likelihood ratio** (Ren et al. 2019, https://arxiv.org/abs/1906.02845): ``log p(x) - log p_bg(x)`` in nats, where
  the background prior ``p_bg`` was trained on perturbed or generic images, so that what both models explain (the
  background statistics) cancels and what only the in-distribution model explains (the semantics) remains;
* **input complexity** (Serrà et al. 2020, https://arxiv.org/abs/1909.11480): the model's code length minus a generic
  compressor's (optimized PNG), in bits/dim: simple images are cheap for every coder, so the difference corrects the
  known bias of raw likelihood towards simple inputs (Nalisnick et al. 2019, https://arxiv.org/abs/1810.09136).

Orientation: a high likelihood and a high likelihood ratio mean "typical"; a high ``input_complexity`` means
"atypical" (it is the model's cost above PNG's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .compression.pixels import png_bits

if TYPE_CHECKING:
    from .models.modeling_prior import AutoregressivePrior

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Scores:
    """Per-image scores.

    Attributes:
        nats: ``(N,)`` log-likelihood of each image in nats.
        bits_per_dim: ``(N,)`` ``-nats / (C H W ln 2)``.
        pixel_bits: ``(N, H, W)`` bits of each pixel (its channels summed) given the pixels before it.
        background_bits_per_dim: ``(N,)`` under the background prior, when one was given.
        likelihood_ratio: ``(N,)`` ``log p(x) - log p_bg(x)`` in nats, when a background prior was given.
        png_bits_per_dim: ``(N,)`` an optimized PNG's size, per dimension.
        input_complexity: ``(N,)`` ``bits_per_dim - png_bits_per_dim``.
    """

    nats: torch.Tensor
    bits_per_dim: torch.Tensor
    pixel_bits: torch.Tensor
    background_bits_per_dim: torch.Tensor | None
    likelihood_ratio: torch.Tensor | None
    png_bits_per_dim: torch.Tensor
    input_complexity: torch.Tensor


@torch.no_grad()
def log_prob_maps(
    prior: AutoregressivePrior,
    x: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """:meth:`~pixelprior.AutoregressivePrior.log_prob_map` in batches, in eval mode, on the CPU.

    Shapes:
        x: ``(N, C, H, W)`` -> ``(N, H, W)`` float64 nats
    """
    x = prior.check_x(x)
    class_labels, cond = prior.check_conditioning(len(x), class_labels, cond)
    was_training = prior.training
    prior.eval()
    try:
        maps = [
            prior.validated_log_prob_map(
                x[s : s + batch_size],
                None if class_labels is None else class_labels[s : s + batch_size],
                None if cond is None else cond[s : s + batch_size],
            )
            .double()
            .cpu()
            for s in range(0, len(x), batch_size)
        ]
    finally:
        prior.train(was_training)
    return torch.cat(maps) if maps else torch.zeros(0, *prior.grid_size, dtype=torch.float64)


def score(
    prior: AutoregressivePrior,
    x: torch.Tensor,
    *,
    class_labels: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    background: AutoregressivePrior | None = None,
    batch_size: int = 256,
) -> Scores:
    """Likelihood, likelihood-ratio and input-complexity scores of each grid (see the module docstring).

    Args:
        prior: the in-distribution prior.
        x: ``(N, C, H, W)`` integer grids of the prior.
        class_labels, cond: the prior's conditioning, if it takes any (the background prior gets none).
        background: a background prior over the same grids (same channels, size and values), or ``None``.
        batch_size: images per forward.

    Raises:
        ValueError: for grids the prior does not take, or a background prior over other grids.

    Shapes:
        x: ``(N, C, H, W)`` -> :class:`Scores` of ``(N,)`` tensors and ``(N, H, W)`` pixel bits
    """
    maps = log_prob_maps(prior, x, class_labels, cond, batch_size)  # (N, H, W)
    x = prior.check_x(x).cpu()
    dims = prior.in_channels * prior.grid_size[0] * prior.grid_size[1]
    nats = maps.flatten(1).sum(1)
    bpd = -nats / (dims * LN2)
    background_bpd = ratio = None
    if background is not None:
        ours = (prior.in_channels, *prior.grid_size, prior.num_values)
        theirs = (background.in_channels, *background.grid_size, background.num_values)
        if ours != theirs:
            raise ValueError(
                f"Expected a background prior over the prior's grids ({ours[0]}x{ours[1]}x{ours[2]}, {ours[3]} "
                f"values), got one over {theirs[0]}x{theirs[1]}x{theirs[2]} grids of {theirs[3]} values."
            )
        background_nats = log_prob_maps(background, x, batch_size=batch_size).flatten(1).sum(1)
        background_bpd = -background_nats / (dims * LN2)
        ratio = nats - background_nats
    png_bpd = png_bits(x, prior.num_values) / dims
    return Scores(
        nats=nats,
        bits_per_dim=bpd,
        pixel_bits=-maps / LN2,
        background_bits_per_dim=background_bpd,
        likelihood_ratio=ratio,
        png_bits_per_dim=png_bpd,
        input_complexity=bpd - png_bpd,
    )


def heatmap(grid: torch.Tensor, pixel_bits: torch.Tensor, num_values: int, vmax: float, scale: int = 4):
    """The image beside a heatmap of its per-pixel bits (black 0, through red and yellow, to white at ``vmax``).

    Args:
        grid: ``(C, H, W)`` long, a grid of 1 or 3 channels.
        pixel_bits: ``(H, W)`` bits of each pixel.
        num_values: the grid's values per channel.
        vmax: the bits shown white (more are clipped); the cost of a uniform guess, ``C log2(num_values)``, is a
            natural choice.
        scale: each pixel becomes ``scale x scale`` pixels.

    Returns:
        An RGB PIL image ``scale H x (2 scale W + scale)``: the image, a gap, the heatmap.
    """
    from PIL import Image

    from .compression.pixels import grid_levels

    if not vmax > 0:
        raise ValueError(f"Expected vmax > 0, got {vmax!r}.")
    levels = torch.from_numpy(grid_levels(grid, num_values))  # (H, W, C) uint8
    image = levels.expand(-1, -1, 3) if levels.shape[-1] == 1 else levels
    t = (pixel_bits.double() / vmax).clamp(0, 1)  # (H, W) in [0, 1]
    hot = torch.stack([(3 * t).clamp(max=1), (3 * t - 1).clamp(0, 1), (3 * t - 2).clamp(0, 1)], dim=-1)
    hot = torch.round(hot * 255).to(torch.uint8)  # (H, W, 3)
    gap = torch.full((grid.shape[1], 1, 3), 128, dtype=torch.uint8)
    row = torch.cat([image, gap, hot], dim=1)  # (H, 2W + 1, 3)
    row = row.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    return Image.fromarray(row.numpy(), "RGB")
