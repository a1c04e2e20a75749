"""The colour palette transform of Image GPT: seeded k-means over RGB bins, encode / decode, safetensors."""

from __future__ import annotations

import pytest
import torch

from pixelprior.data import ColorPalette


def clustered_images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit images whose pixels are 4 colours plus small noise; returns (images, the 4 colours)."""
    gen = torch.Generator().manual_seed(seed)
    colors = torch.tensor([[10, 20, 30], [200, 40, 40], [30, 220, 60], [240, 240, 250]])
    which = torch.randint(0, 4, (6, 8, 8), generator=gen)
    noise = torch.randint(-3, 4, (6, 8, 8, 3), generator=gen)
    images = (colors[which] + noise).clamp(0, 255).permute(0, 3, 1, 2)  # (6, 3, 8, 8)
    return images, colors


def test_fit_encode_decode():
    images, colors = clustered_images()
    palette = ColorPalette.fit(images, num_colors=4, num_iters=50, seed=0)
    ids = palette.encode(images)
    assert ids.shape == (6, 1, 8, 8) and ids.dtype == torch.long
    decoded = palette.decode(ids)
    assert decoded.shape == images.shape and decoded.dtype == torch.long
    assert (decoded - images).abs().max() <= 4  # every pixel lands on its own cluster's centre
    # The centres are the 4 colours, up to the noise.
    centres = palette.decode(torch.arange(4).view(1, 1, 1, 4))[0, :, 0].T  # (4, 3)
    assert (centres[:, None] - colors[None]).abs().amax(2).amin(0).max() <= 2
    # Decoding then encoding is the identity on ids.
    assert torch.equal(palette.encode(decoded), ids)
    assert torch.equal(palette.decode(ids[:, 0]), decoded)  # (B, H, W) ids accepted


def test_fit_is_seeded(tmp_path):
    images, _ = clustered_images()
    a = ColorPalette.fit(images, num_colors=8, seed=1)
    b = ColorPalette.fit(images, num_colors=8, seed=1)
    assert torch.equal(a.centers, b.centers)
    a.save(tmp_path / "palette.safetensors")
    loaded = ColorPalette.load(tmp_path / "palette.safetensors")
    assert torch.equal(loaded.centers, a.centers) and loaded.num_values == 256


@pytest.mark.parametrize(
    "bad",
    [
        lambda x: x.float(),
        lambda x: x[:, :2],
        lambda x: x + 256,
        lambda x: x[0],
    ],
)
def test_bad_images_raise(bad):
    images, _ = clustered_images()
    palette = ColorPalette.fit(images, num_colors=4)
    with pytest.raises(ValueError):
        palette.encode(bad(images))
    with pytest.raises(ValueError):
        palette.decode(torch.full((1, 1, 2, 2), 4))
    with pytest.raises(ValueError):
        ColorPalette.fit(images[:, :, :1, :1], num_colors=64)  # fewer distinct colours than clusters
