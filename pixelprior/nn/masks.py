"""Causal masks: the only place in pixelprior where autoregressive masks are built.

Two kinds of constraint make a convolution causal in raster order (row by row, left to right, and
R -> G -> B within a pixel):

* **spatial**: an output at pixel ``(i, j)`` may read input pixels strictly before ``(i, j)`` in raster
  order; the pixel itself (the kernel's *anchor* tap) is governed by the channel rule below;
* **channel groups**: with ``C > 1`` data channels every feature map belongs to one of ``C`` groups
  (group ``c`` "speaks for" data channel ``c``). At the anchor tap, output group ``g`` may read input group
  ``g'`` only if ``g' < g`` (mask ``"A"``, first layer: a channel never sees itself) or ``g' <= g``
  (mask ``"B"``, later layers). With ``C = 1`` this reduces to "without centre" (A) / "with centre" (B).

Masks are float tensors of shape ``(out_channels, in_channels, kh, kw)`` (or ``(1, 1, kh, kw)`` when no
channel groups are given); layers multiply their weights by them functionally (``w * mask``).
"""

from __future__ import annotations

from typing import Literal

import torch

MaskType = Literal["A", "B"]


def channel_groups(num_channels: int, num_groups: int) -> torch.Tensor:
    """Assign ``num_channels`` feature maps to ``num_groups`` contiguous groups of (nearly) equal size.

    Channel ``n`` goes to group ``n * num_groups // num_channels``, so 256 maps over 3 groups are split
    86 / 85 / 85 and every group is non-empty.

    Args:
        num_channels: number of feature maps.
        num_groups: number of groups (the number of data channels ``C``).

    Returns:
        LongTensor ``(num_channels,)`` with the group id of each channel, non-decreasing.

    Raises:
        ValueError: if some group would be empty (``num_channels < num_groups``).
    """
    if num_groups < 1 or num_channels < num_groups:
        raise ValueError(f"Expected at least {num_groups} channels (one per data channel group), got {num_channels}.")
    return torch.arange(num_channels) * num_groups // num_channels


def spatial_mask(
    kernel_size: tuple[int, int], anchor: tuple[int, int] | None = None, *, include_anchor: bool
) -> torch.Tensor:
    """Raster-order mask of a ``kh x kw`` kernel whose tap ``anchor`` sits on the output pixel.

    Taps in rows above the anchor, and left of it in its row, are 1; taps after it are 0; the anchor
    itself is ``include_anchor``.

    Returns:
        Float tensor ``(kh, kw)``.
    """
    kh, kw = kernel_size
    ai, aj = anchor if anchor is not None else (kh // 2, kw // 2)
    if not (0 <= ai < kh and 0 <= aj < kw):
        raise ValueError(f"Expected an anchor inside the {kh}x{kw} kernel, got {(ai, aj)}.")
    rows = torch.arange(kh).view(kh, 1)
    cols = torch.arange(kw).view(1, kw)
    before = (rows < ai) | ((rows == ai) & (cols < aj))
    mask = before.float()
    mask[ai, aj] = float(include_anchor)
    return mask


def causal_mask(
    kernel_size: tuple[int, int],
    mask_type: MaskType,
    *,
    anchor: tuple[int, int] | None = None,
    in_groups: torch.Tensor | None = None,
    out_groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Full causal mask of a convolution, spatial order and (optionally) R -> G -> B channel groups.

    Args:
        kernel_size: ``(kh, kw)``.
        mask_type: ``"A"`` (the anchor pixel's own group is hidden) or ``"B"`` (visible).
        anchor: the tap aligned with the output pixel; defaults to the kernel centre.
        in_groups: ``(in_channels,)`` group ids of the input feature maps, or ``None`` for a single group.
        out_groups: ``(out_channels,)`` group ids of the output feature maps, or ``None``.

    Returns:
        Float tensor ``(out_channels, in_channels, kh, kw)``, or ``(1, 1, kh, kw)`` without groups.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"Expected mask_type 'A' or 'B', got {mask_type!r}.")
    if (in_groups is None) != (out_groups is None):
        raise ValueError("Expected both in_groups and out_groups, or neither.")
    kh, kw = kernel_size
    ai, aj = anchor if anchor is not None else (kh // 2, kw // 2)
    spatial = spatial_mask(kernel_size, (ai, aj), include_anchor=False)
    if in_groups is None:
        mask = spatial.clone()
        mask[ai, aj] = float(mask_type == "B")
        return mask.view(1, 1, kh, kw)
    # (out, in): which input groups each output group may read at the anchor tap.
    if mask_type == "A":
        centre = out_groups.view(-1, 1) > in_groups.view(1, -1)
    else:
        centre = out_groups.view(-1, 1) >= in_groups.view(1, -1)
    mask = spatial.expand(len(out_groups), len(in_groups), kh, kw).clone()
    mask[:, :, ai, aj] = centre.float()
    return mask


def local_causal_mask(query_positions: torch.Tensor, memory_positions: torch.Tensor) -> torch.Tensor:
    """Causal mask of local self-attention: which memory positions each query of a block may attend to.

    Local attention (the Image Transformer's) splits a raster-ordered sequence into query blocks, each with a
    memory block of positions around it that contains the query block (:class:`pixelprior.nn.attention.LocalBlocks`).
    Query ``t`` may attend to memory position ``s`` iff ``s`` is a real position and ``s <= t``: the inputs of such a
    model are shifted by one position (position ``s`` carries value ``s - 1``), so attending to itself is causal.
    Since the query block is part of its memory, every real query sees at least itself. Padding (``-1``) is never
    attended to; padding queries (whose outputs are discarded) may attend to every real memory position, so that no
    softmax row is empty.

    Args:
        query_positions: raster index of each query of each block, ``-1`` for padding.
        memory_positions: raster index of each memory position of each block, ``-1`` for padding.

    Shapes:
        query_positions: ``(nb, Q)``, memory_positions: ``(nb, M)`` -> ``(nb, Q, M)`` bool, True = may attend
    """
    if query_positions.ndim != 2 or memory_positions.ndim != 2 or len(query_positions) != len(memory_positions):
        raise ValueError(
            f"Expected query_positions (nb, Q) and memory_positions (nb, M) with the same nb, got "
            f"{tuple(query_positions.shape)} and {tuple(memory_positions.shape)}."
        )
    q = query_positions.unsqueeze(-1)  # (nb, Q, 1)
    m = memory_positions.unsqueeze(-2)  # (nb, 1, M)
    return (m >= 0) & ((m <= q) | (q < 0))
