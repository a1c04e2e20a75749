"""VQPriorPipeline with real tiny diffusers VQModels: decoding, output types, seeds, save/load, inpainting, checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from diffusers import VQModel
from einops import rearrange
from PIL import Image

from pixelprior import VQPriorPipeline, create_prior
from pixelprior.pipelines import load_pipeline
from pixelprior.pipelines.inpainting import keep_mask_on_grid
from tests.conftest import tiny_vqmodel

K, IMAGE, GRID = 8, 8, 4  # codebook size, image side, code grid side (8 / 2**1)


def tiny_vqvae(lookup_from_codebook: bool = False, seed: int = 0) -> VQModel:
    return tiny_vqmodel(
        IMAGE,
        K,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        lookup_from_codebook=lookup_from_codebook,
        seed=seed,
    )


def tiny_prior(**overrides):
    torch.manual_seed(1)
    config = {"sample_size": GRID, "num_values": K, "hidden_channels": 8, "num_layers": 2, **overrides}
    return create_prior("gated_pixelcnn_mnist", **config)


def _run(pipe, seed=0, **kwargs):
    return pipe(generator=torch.Generator().manual_seed(seed), progress=False, **kwargs).images


@pytest.fixture(scope="module")
def pipe() -> VQPriorPipeline:
    return VQPriorPipeline(tiny_prior(), tiny_vqvae())


def test_output_types_agree(pipe):
    codes = _run(pipe, batch_size=3, output_type="latent")
    assert codes.dtype == torch.long and codes.shape == (3, 1, GRID, GRID)
    assert int(codes.min()) >= 0 and int(codes.max()) < K
    pt = _run(pipe, batch_size=3, output_type="pt")
    assert pt.shape == (3, 1, IMAGE, IMAGE) and float(pt.min()) >= 0 and float(pt.max()) <= 1
    assert torch.allclose(pt, (pipe.decode_codes(codes) / 2 + 0.5).clamp(0, 1))
    np_images = _run(pipe, batch_size=3, output_type="np")
    assert np.array_equal(np_images, pt.permute(0, 2, 3, 1).numpy())
    pil = _run(pipe, batch_size=3)
    assert all(isinstance(im, Image.Image) and im.mode == "L" and im.size == (IMAGE, IMAGE) for im in pil)
    assert np.array_equal(np.stack([np.asarray(im) for im in pil]), (np_images[..., 0] * 255).round().astype(np.uint8))
    (tupled,) = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), output_type="latent", return_dict=False)
    assert torch.equal(tupled, codes)
    with pytest.raises(ValueError, match="output_type"):
        pipe(output_type="jpeg", progress=False)


def test_same_seed_same_images(pipe):
    a, b = _run(pipe, 3, batch_size=4, output_type="pt"), _run(pipe, 3, batch_size=4, output_type="pt")
    assert torch.equal(a, b)
    assert not torch.equal(
        _run(pipe, 3, batch_size=4, output_type="latent"), _run(pipe, 4, batch_size=4, output_type="latent")
    )
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    both = pipe(batch_size=2, generator=gens, output_type="latent", progress=False).images
    alone = pipe(batch_size=1, generator=[torch.Generator().manual_seed(2)], output_type="latent", progress=False)
    assert torch.equal(both[1:], alone.images)


@pytest.mark.parametrize("lookup_from_codebook", [False, True])
def test_images_are_the_vqmodel_decoding_of_the_sampled_codes(lookup_from_codebook):
    vqvae = tiny_vqvae(lookup_from_codebook)
    pipe = VQPriorPipeline(tiny_prior(), vqvae)
    codes = _run(pipe, 5, batch_size=3, output_type="latent")
    images = _run(pipe, 5, batch_size=3, output_type="pt")
    # The codebook vectors of the codes, looked up by hand: (B, 1, h, w) -> (B, D, h, w) (contiguous, as the
    # quantizer returns them: convolutions of another memory layout round differently).
    vectors = rearrange(vqvae.quantize.embedding.weight[codes[:, 0]], "b h w d -> b d h w").contiguous()
    with torch.no_grad():
        if lookup_from_codebook:  # this kind of VQModel decodes indices
            flat = rearrange(codes, "b 1 h w -> (b h w)")
            expected = vqvae.decode(flat, force_not_quantize=True, shape=(3, GRID, GRID, 4)).sample
        else:
            expected = vqvae.decode(vectors, force_not_quantize=True).sample
        # quantizing the codebook vectors again (decode's default) picks the same codes: same images
        requantized = vqvae.decode(vectors).sample
    assert torch.equal(images, (expected / 2 + 0.5).clamp(0, 1))
    assert torch.equal(expected, requantized)
    # Both kinds of VQModel with the same weights give the same images.
    other = VQModel.from_config({**vqvae.config, "lookup_from_codebook": not lookup_from_codebook})
    other.load_state_dict(vqvae.state_dict())
    assert torch.equal(pipe.decode_codes(codes), VQPriorPipeline(pipe.prior, other.eval()).decode_codes(codes))


def test_decoding_matches_the_vqmodel_autoencoder(pipe):
    # Encoding then decoding through the pipeline is the VQModel's own forward (encode, quantize, decode).
    images = torch.rand(2, 1, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    codes = pipe.encode_images(images)
    assert codes.shape == (2, 1, GRID, GRID)
    with torch.no_grad():
        reference = pipe.vqvae(images).sample
    assert torch.allclose(pipe.decode_codes(codes), reference, atol=1e-5)


def test_mismatched_prior_raises():
    vqvae = tiny_vqvae()
    with pytest.raises(ValueError, match="codebook size 8"):
        VQPriorPipeline(tiny_prior(num_values=16), vqvae)
    with pytest.raises(ValueError, match=r"latent grid \(4, 4\)"):
        VQPriorPipeline(tiny_prior(sample_size=8), vqvae)
    with pytest.raises(ValueError, match="in_channels=1"):
        VQPriorPipeline(tiny_prior(in_channels=3), vqvae)
    pipe = VQPriorPipeline(tiny_prior(), vqvae)
    with pytest.raises(ValueError, match=r"codes in \[0, 8\)"):
        pipe.decode_codes(torch.full((1, 1, GRID, GRID), K))
    with pytest.raises(ValueError, match="shape"):
        pipe.decode_codes(torch.zeros(1, 1, GRID + 1, GRID, dtype=torch.long))


def test_save_and_load_round_trip_without_pickle(pipe, tmp_path, monkeypatch):
    pipe.save_pretrained(tmp_path)
    with open(tmp_path / "model_index.json") as f:
        index = json.load(f)
    assert index["_class_name"] == "VQPriorPipeline"
    assert index["prior"] == ["pixelprior", "GatedPixelCNN"] and index["vqvae"] == ["diffusers", "VQModel"]
    written = [os.path.join(root, name) for root, _, names in os.walk(tmp_path) for name in names]
    assert all(name.endswith((".json", ".safetensors")) for name in written), written

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load (pickle) was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    for loaded in (VQPriorPipeline.from_pretrained(tmp_path), load_pipeline(tmp_path)):
        assert type(loaded) is VQPriorPipeline
        assert torch.equal(
            _run(loaded, 9, batch_size=3, output_type="pt"), _run(pipe, 9, batch_size=3, output_type="pt")
        )


def test_keep_mask_on_grid_keeps_only_whole_black_cells():
    regenerate = torch.zeros(1, 1, IMAGE, IMAGE, dtype=torch.bool)
    regenerate[0, 0, 0, 0] = True  # one white pixel in cell (0, 0)
    regenerate[0, 0, 5:, :] = True  # rows 5-7: cells of rows 2 (pixels 4-5) and 3 (pixels 6-7)
    keep = keep_mask_on_grid(regenerate, (GRID, GRID))[0, 0]
    expected = torch.ones(GRID, GRID, dtype=torch.bool)
    expected[0, 0] = False
    expected[2:] = False
    assert torch.equal(keep, expected)
    with pytest.raises(ValueError, match="divisible"):
        keep_mask_on_grid(torch.zeros(1, 1, 9, 8, dtype=torch.bool), (GRID, GRID))


def test_inpainting_keeps_the_codes_under_the_black_region(pipe):
    image = torch.rand(1, 1, IMAGE, IMAGE, generator=torch.Generator().manual_seed(3))  # [0, 1]
    mask = torch.zeros(1, 1, IMAGE, IMAGE)
    mask[..., IMAGE // 2 :, :] = 1.0  # white bottom half: regenerate code rows 2 and 3
    codes = _run(pipe, 1, batch_size=4, image=image, mask_image=mask, output_type="latent")
    encoded = pipe.encode_images(image * 2 - 1)  # (1, 1, h, w)
    assert codes.shape == (4, 1, GRID, GRID)
    assert torch.equal(codes[:, :, : GRID // 2], encoded[:, :, : GRID // 2].expand(4, -1, -1, -1))
    assert not torch.equal(codes[:, :, GRID // 2 :], encoded[:, :, GRID // 2 :].expand(4, -1, -1, -1))
    images = _run(pipe, 1, batch_size=4, image=image, mask_image=mask, output_type="pt")
    assert torch.allclose(images, (pipe.decode_codes(codes) / 2 + 0.5).clamp(0, 1))
    with pytest.raises(ValueError, match=r"image of shape \(B, 1, 8, 8\)"):
        pipe(image=torch.rand(1, 1, 16, 16), mask_image=mask, progress=False)
    with pytest.raises(ValueError, match="mask_image of shape"):
        pipe(image=image, mask_image=torch.zeros(1, 1, 4, 4), progress=False)
    with pytest.raises(ValueError, match="both image and mask_image"):
        pipe(image=image, progress=False)
