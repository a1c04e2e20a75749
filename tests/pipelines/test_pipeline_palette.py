"""PixelPriorPipeline's optional palette component: priors over colour ids (Image GPT) sample and inpaint RGB."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixelprior import ColorPalette, ImageGPT, PixelPriorPipeline, create_prior


def palette_pipe(num_colors: int = 8) -> PixelPriorPipeline:
    torch.manual_seed(0)
    prior = ImageGPT(sample_size=4, num_values=num_colors, hidden_channels=16, num_layers=1, num_heads=2).eval()
    centers = torch.rand(num_colors, 3, generator=torch.Generator().manual_seed(1))
    return PixelPriorPipeline(prior, palette=ColorPalette(centers))


def test_outputs_are_the_palette_colours_of_the_sampled_ids():
    pipe = palette_pipe()
    ids = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), output_type="latent", progress=False).images
    rgb = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), output_type="pt", progress=False).images
    assert ids.shape == (3, 1, 4, 4) and rgb.shape == (3, 3, 4, 4)
    expected = torch.round(pipe.palette.centers[ids[:, 0]] * 255).permute(0, 3, 1, 2) / 255  # (B, 3, H, W)
    torch.testing.assert_close(rgb, expected, rtol=0, atol=1e-6)
    image = pipe(batch_size=1, generator=torch.Generator().manual_seed(0), progress=False).images[0]
    assert image.mode == "RGB" and image.size == (4, 4)


def test_inpainting_encodes_the_image_to_its_nearest_colours():
    pipe = palette_pipe()
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3)).astype(np.uint8)  # (H, W, 3) RGB
    mask = np.zeros((4, 4), dtype=np.float32)
    mask[2:] = 1.0  # white: regenerate the bottom half
    ids = pipe(
        image=image.astype(np.float32) / 255, mask_image=mask, output_type="latent", progress=False,
        generator=torch.Generator().manual_seed(2),
    ).images  # fmt: skip
    nearest = pipe.palette.encode(torch.from_numpy(image).permute(2, 0, 1)[None].long())  # (1, 1, H, W)
    assert torch.equal(ids[:, :, :2], nearest[:, :, :2])


def test_save_and_load_round_trip(tmp_path):
    pipe = palette_pipe()
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["palette"] == ["pixelprior", "ColorPalette"]
    assert sorted(p.name for p in (tmp_path / "palette").iterdir()) == ["palette.safetensors"]
    loaded = PixelPriorPipeline.from_pretrained(tmp_path)
    assert torch.equal(loaded.palette.centers, pipe.palette.centers) and loaded.palette.num_values == 256
    ids = [
        p(batch_size=2, generator=torch.Generator().manual_seed(4), output_type="latent", progress=False).images
        for p in (pipe, loaded)
    ]
    assert torch.equal(*ids)


def test_a_palette_folder_loads_through_every_loader(tmp_path):
    from diffusers import DiffusionPipeline

    from pixelprior.pipelines import load_pipeline

    pipe = palette_pipe()
    pipe.save_pretrained(tmp_path)
    for loaded in (load_pipeline(tmp_path), DiffusionPipeline.from_pretrained(tmp_path)):
        assert type(loaded) is PixelPriorPipeline and torch.equal(loaded.palette.centers, pipe.palette.centers)
    (tmp_path / "palette" / "palette.safetensors").write_bytes(b"\x80\x04 a pickle, not safetensors")
    with pytest.raises(ValueError, match="Expected a safetensors palette file"):
        PixelPriorPipeline.from_pretrained(tmp_path)


def test_a_pipeline_without_palette_loads_as_before(tmp_path):
    pipe = PixelPriorPipeline(create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1))
    pipe.save_pretrained(tmp_path)
    assert PixelPriorPipeline.from_pretrained(tmp_path).palette is None


def test_a_palette_must_match_the_prior_and_its_file_must_be_one():
    with pytest.raises(ValueError, match=r"prior over the palette's ids \(in_channels=1, num_values=8\)"):
        PixelPriorPipeline(create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1), palette_pipe().palette)


def test_a_bad_palette_file_is_a_value_error(tmp_path):
    (tmp_path / "palette.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match="Expected a safetensors palette file"):
        ColorPalette.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="Expected a palette folder holding palette.safetensors"):
        ColorPalette.from_pretrained(tmp_path / "missing")
