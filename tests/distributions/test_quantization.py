"""The one float <-> bins conversion: rounding (never truncation), exact round trips, loud failures."""

from __future__ import annotations

import pytest
import torch

from pixelprior.distributions import binarize, bins_to_images, bins_to_input, images_to_bins

DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_8bit_level_maps_back_to_itself(dtype):
    levels = torch.arange(256)
    images = levels.to(dtype) / 255
    assert torch.equal(images_to_bins(images, 256), levels)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rounds_never_truncates(dtype):
    k = torch.arange(256, dtype=dtype)
    # Just below a level rounds up to it (truncation would give k - 1) ...
    below = (k[1:] - 0.49) / 255
    assert torch.equal(images_to_bins(below, 256), torch.arange(1, 256))
    # ... just above stays on it, and past the half-way point goes to the next level.
    above = (k[:-1] + 0.49) / 255
    assert torch.equal(images_to_bins(above, 256), torch.arange(255))
    past_half = (k[:-1] + 0.51) / 255
    assert torch.equal(images_to_bins(past_half, 256), torch.arange(1, 256))
    # The 0.5/255 edges of the interval.
    edges = torch.tensor([0.0, 0.49 / 255, 0.51 / 255, 254.49 / 255, 254.51 / 255, 1.0], dtype=dtype)
    assert images_to_bins(edges, 256).tolist() == [0, 0, 1, 254, 255, 255]


def test_truncation_would_misplace_levels():
    # The anti-pattern of STYLE.md: truncating (x + 1) / 2 * 255 on [-1, 1] data puts levels in the wrong bin.
    levels = torch.arange(256)
    centred = levels.double() / 255 * 2 - 1
    truncated = ((centred + 1) / 2 * 255).long()
    assert not torch.equal(truncated, levels)  # the bug the rounding guards against
    assert torch.equal(images_to_bins((centred + 1) / 2, 256), levels)


@pytest.mark.parametrize("num_values", [2, 16, 256])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_round_trip_bins_images_bins(num_values, dtype):
    bins = torch.arange(num_values).repeat(3).view(3, 1, num_values)
    images = bins_to_images(bins, num_values, dtype=dtype)
    assert images.dtype == dtype
    assert images.min() == 0 and images.max() == 1
    assert torch.equal(images_to_bins(images, num_values), bins)


@pytest.mark.parametrize("num_values", [2, 3, 16, 256])
def test_bins_to_input_is_centred(num_values):
    bins = torch.arange(num_values)
    h = bins_to_input(bins, num_values, dtype=torch.float64)
    assert h[0] == -1 and h[-1] == 1
    assert (h[1:] > h[:-1]).all()
    torch.testing.assert_close(h, bins.double() * 2 / (num_values - 1) - 1, rtol=0, atol=1e-15)
    assert bins_to_input(bins, num_values).dtype == torch.float32


def test_binarize_threshold():
    images = torch.tensor([0.0, 0.25, 0.4999, 0.5, 0.75, 1.0])
    assert binarize(images).tolist() == [0, 0, 0, 1, 1, 1]
    assert binarize(images, threshold=0.25).tolist() == [0, 1, 1, 1, 1, 1]
    assert binarize(images).dtype == torch.long


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        images_to_bins(torch.tensor([0, 1]), 256)  # integers are bins already
    with pytest.raises(ValueError):
        images_to_bins(torch.tensor([0, 255], dtype=torch.uint8), 256)
    with pytest.raises(ValueError):
        images_to_bins(torch.tensor([-0.01, 0.5]), 256)
    with pytest.raises(ValueError):
        images_to_bins(torch.tensor([0.5, 1.01]), 256)
    with pytest.raises(ValueError):
        images_to_bins(torch.tensor([0.5, 255.0]), 256)  # [0, 255] data, not [0, 1]
    with pytest.raises(ValueError):
        binarize(torch.tensor([0, 1]))
    for num_values in (1, 0, 2.0, None):
        with pytest.raises(ValueError):
            images_to_bins(torch.tensor([0.5]), num_values)
        with pytest.raises(ValueError):
            bins_to_images(torch.tensor([0]), num_values)
        with pytest.raises(ValueError):
            bins_to_input(torch.tensor([0]), num_values)


def test_nan_images_raise():
    # NaN is not in [0, 1]; rounding it gives an arbitrary bin silently.
    with pytest.raises(ValueError):
        images_to_bins(torch.tensor([0.5, float("nan")]), 256)


def test_binarize_out_of_range_raises():
    # [0, 255] data binarized as if in [0, 1] is all ones: it must raise, like images_to_bins.
    with pytest.raises(ValueError):
        binarize(torch.tensor([0.0, 128.0, 255.0]))
