"""Causal masks: raster order in space, R -> G -> B between channel groups, mask A vs B at the anchor."""

from __future__ import annotations

import pytest
import torch

from pixelprior.nn import causal_mask, channel_groups, spatial_mask

KERNELS = [(1, 1), (3, 3), (5, 5), (7, 7), (2, 2), (2, 3), (3, 1), (1, 4)]


def before_anchor(kh: int, kw: int, ai: int, aj: int) -> torch.Tensor:
    """Reference: taps strictly before the anchor in raster order, written tap by tap."""
    ref = torch.zeros(kh, kw)
    for r in range(kh):
        for c in range(kw):
            ref[r, c] = float(r < ai or (r == ai and c < aj))
    return ref


def anchors(kh: int, kw: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(kh) for c in range(kw)]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: f"{k[0]}x{k[1]}")
@pytest.mark.parametrize("include_anchor", [False, True], ids=["no-anchor", "anchor"])
def test_spatial_mask_only_earlier_taps(kernel, include_anchor):
    kh, kw = kernel
    for ai, aj in anchors(kh, kw):
        mask = spatial_mask(kernel, (ai, aj), include_anchor=include_anchor)
        ref = before_anchor(kh, kw, ai, aj)
        ref[ai, aj] = float(include_anchor)
        assert mask.shape == (kh, kw)
        assert torch.equal(mask, ref), (ai, aj)


@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (7, 7)], ids=lambda k: f"{k[0]}x{k[1]}")
def test_spatial_mask_default_anchor_is_centre(kernel):
    kh, kw = kernel
    mask = spatial_mask(kernel, include_anchor=False)
    assert torch.equal(mask, before_anchor(kh, kw, kh // 2, kw // 2))
    # Half the kernel, minus the centre: (k*k - 1) / 2 taps.
    assert int(mask.sum()) == (kh * kw - 1) // 2


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: f"{k[0]}x{k[1]}")
def test_causal_mask_a_vs_b_differ_only_at_anchor(kernel):
    kh, kw = kernel
    for ai, aj in anchors(kh, kw):
        a = causal_mask(kernel, "A", anchor=(ai, aj))
        b = causal_mask(kernel, "B", anchor=(ai, aj))
        assert a.shape == b.shape == (1, 1, kh, kw)
        assert a[0, 0, ai, aj] == 0 and b[0, 0, ai, aj] == 1
        ref = before_anchor(kh, kw, ai, aj)
        a[0, 0, ai, aj] = b[0, 0, ai, aj] = 0
        assert torch.equal(a[0, 0], ref) and torch.equal(b[0, 0], ref)


def test_causal_mask_pixelcnn_7x7_mask_a():
    # The paper's first layer: the 3 rows above and the 3 pixels left of the centre, 24 taps.
    mask = causal_mask((7, 7), "A")[0, 0]
    assert int(mask.sum()) == 24
    assert mask[:3].eq(1).all() and mask[3, :3].eq(1).all() and mask[3, 3:].eq(0).all() and mask[4:].eq(0).all()


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize(
    "in_channels,out_channels,groups",
    [(3, 6, 3), (6, 6, 3), (7, 5, 3), (12, 3, 3), (4, 4, 2), (5, 5, 1)],
    ids=lambda v: str(v),
)
def test_causal_mask_channel_groups(mask_type, in_channels, out_channels, groups):
    """At the anchor, output group g reads input group g' iff g' < g (A) or g' <= g (B); elsewhere the spatial rule."""
    in_groups, out_groups = channel_groups(in_channels, groups), channel_groups(out_channels, groups)
    kh, kw, (ai, aj) = 3, 3, (1, 1)
    mask = causal_mask((kh, kw), mask_type, in_groups=in_groups, out_groups=out_groups)
    assert mask.shape == (out_channels, in_channels, kh, kw)
    spatial = before_anchor(kh, kw, ai, aj)
    for o in range(out_channels):
        for i in range(in_channels):
            go, gi = int(out_groups[o]), int(in_groups[i])
            visible = gi < go if mask_type == "A" else gi <= go
            assert mask[o, i, ai, aj] == float(visible), (o, i)
            expected = spatial.clone()
            expected[ai, aj] = float(visible)
            assert torch.equal(mask[o, i], expected)


def test_causal_mask_rgb_data_channels():
    # First layer of an RGB model: R features see no channel of the pixel, G sees R, B sees R and G.
    data, feats = torch.arange(3), channel_groups(6, 3)
    centre = causal_mask((3, 3), "A", in_groups=data, out_groups=feats)[:, :, 1, 1]
    expected = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=centre.dtype)
    assert torch.equal(centre, expected)
    # Output layer (mask B): R logits read R features, G reads R and G, B reads all.
    centre = causal_mask((1, 1), "B", in_groups=feats, out_groups=data)[:, :, 0, 0]
    expected = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=centre.dtype)
    assert torch.equal(centre, expected)


def test_channel_groups_even_split():
    assert channel_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert channel_groups(4, 1).tolist() == [0, 0, 0, 0]
    assert channel_groups(3, 3).tolist() == [0, 1, 2]


@pytest.mark.parametrize("num_channels,num_groups", [(256, 3), (7, 3), (5, 3), (10, 4), (100, 7), (4, 3), (11, 2)])
def test_channel_groups_uneven_split(num_channels, num_groups):
    groups = channel_groups(num_channels, num_groups)
    assert groups.shape == (num_channels,) and groups.dtype == torch.long
    assert (groups[1:] >= groups[:-1]).all(), "groups must be contiguous"
    counts = torch.bincount(groups, minlength=num_groups)
    assert len(counts) == num_groups and (counts >= 1).all()
    assert int(counts.max() - counts.min()) <= 1
    if (num_channels, num_groups) == (256, 3):
        assert counts.tolist() == [86, 85, 85]


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        channel_groups(2, 3)  # a group would be empty
    with pytest.raises(ValueError):
        channel_groups(4, 0)
    with pytest.raises(ValueError):
        spatial_mask((3, 3), (3, 0), include_anchor=True)
    with pytest.raises(ValueError):
        spatial_mask((3, 3), (0, -1), include_anchor=True)
    with pytest.raises(ValueError):
        causal_mask((3, 3), "C")
    with pytest.raises(ValueError):
        causal_mask((3, 3), "A", anchor=(1, 3))
    with pytest.raises(ValueError):
        causal_mask((3, 3), "A", in_groups=torch.arange(3))
    with pytest.raises(ValueError):
        causal_mask((3, 3), "B", out_groups=torch.arange(3))
