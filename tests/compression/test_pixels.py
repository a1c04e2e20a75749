"""Exact image <-> grid conversions of lossless coding, and the errors that name a bad image."""

import pytest
import torch
from PIL import Image

from pixelprior.compression.pixels import grid_to_image, image_to_grid, png_bits, read_image_grid


@pytest.mark.parametrize("C,K", [(1, 2), (1, 16), (1, 256), (3, 4), (3, 256)])
def test_grid_image_round_trip(C, K, tmp_path):
    x = torch.randint(0, K, (C, 5, 7), generator=torch.Generator().manual_seed(K))
    image = grid_to_image(x, K)
    assert image.mode == {(1, 2): "1"}.get((C, K), "L" if C == 1 else "RGB") and image.size == (7, 5)
    image.save(tmp_path / "a.png")
    assert torch.equal(read_image_grid(tmp_path / "a.png", K, C, (5, 7)), x)


def test_binary_images_may_be_gray_with_two_levels():
    image = Image.new("L", (3, 2), 255)
    assert torch.equal(image_to_grid(image, 2, 1, (2, 3), "x.png"), torch.ones(1, 2, 3, dtype=torch.long))


@pytest.mark.parametrize(
    "image,message",
    [
        (Image.new("RGB", (3, 2)), "mode 1 or L for this model, got mode RGB in bad.png"),
        (Image.new("L", (2, 3)), "2x3 \\(HxW\\) for this model, got 3x2 in bad.png"),
        (Image.new("L", (3, 2), 100), "2 levels of this model \\(0, 255\\).*\\[100\\] in bad.png"),
    ],
)
def test_bad_images_are_named(image, message):
    with pytest.raises(ValueError, match=message):
        image_to_grid(image, 2, 1, (2, 3), "bad.png")


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="x.png"):
        read_image_grid(tmp_path / "x.png", 2, 1, (2, 3))


def test_png_bits_are_file_sizes():
    flat, noisy = torch.zeros(1, 1, 16, 16, dtype=torch.long), torch.randint(0, 256, (1, 1, 16, 16))
    bits = png_bits(torch.cat([flat, noisy]), 256)
    assert bits[0] < bits[1] and bits[1] >= 8 * 256  # noise does not compress
