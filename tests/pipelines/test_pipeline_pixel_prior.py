"""PixelPriorPipeline: output types, determinism, and the save -> load round trip."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pixelprior import create_prior
from pixelprior.pipelines import PixelPriorPipeline, make_image_grid


def _pipe(**overrides) -> PixelPriorPipeline:
    torch.manual_seed(0)
    config = {"hidden_channels": 16, "num_layers": 2, "sample_size": 8, **overrides}
    pipe = PixelPriorPipeline(create_prior("pixelcnn_mnist", **config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, seed=0, **kwargs):
    return pipe(generator=torch.Generator().manual_seed(seed), progress=False, **kwargs).images


def _public(config) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def pipe() -> PixelPriorPipeline:
    return _pipe()


def test_output_types_agree(pipe):
    latent = _run(pipe, batch_size=3, output_type="latent")
    assert latent.dtype == torch.long and latent.shape == (3, 1, 8, 8)
    assert set(latent.unique().tolist()) <= {0, 1}
    pt = _run(pipe, batch_size=3, output_type="pt")
    assert pt.dtype == torch.float32 and torch.equal(pt, latent.float())  # 2 values: bins 0, 1 -> 0.0, 1.0
    np_images = _run(pipe, batch_size=3, output_type="np")
    assert isinstance(np_images, np.ndarray) and np_images.shape == (3, 8, 8, 1)
    assert np.array_equal(np_images, pt.permute(0, 2, 3, 1).numpy())
    pil = _run(pipe, batch_size=3)
    assert len(pil) == 3 and all(isinstance(im, Image.Image) and im.mode == "L" and im.size == (8, 8) for im in pil)
    assert np.array_equal(np.stack([np.asarray(im) for im in pil]), (np_images[..., 0] * 255).round().astype(np.uint8))


def test_same_seed_same_images(pipe):
    a, b = _run(pipe, 7, batch_size=4, output_type="latent"), _run(pipe, 7, batch_size=4, output_type="latent")
    assert torch.equal(a, b)
    assert not torch.equal(a, _run(pipe, 8, batch_size=4, output_type="latent"))
    # One generator per image: image k depends on generator k only.
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    both = pipe(batch_size=2, generator=gens, output_type="latent", progress=False).images
    alone = pipe(batch_size=1, generator=[torch.Generator().manual_seed(2)], output_type="latent", progress=False)
    assert torch.equal(both[1:], alone.images)


def test_cached_and_plain_sampling_agree():
    pipe = _pipe()
    pipe.prior.double()
    cached = _run(pipe, 3, batch_size=2, output_type="latent")
    plain = _run(pipe, 3, batch_size=2, output_type="latent", use_cache=False)
    assert torch.equal(cached, plain)


def test_return_dict_false_and_bad_arguments(pipe):
    (images,) = pipe(batch_size=1, output_type="latent", return_dict=False, progress=False)
    assert images.shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="output_type"):
        pipe(batch_size=1, output_type="jpeg", progress=False)
    with pytest.raises(ValueError, match="temperature"):
        pipe(batch_size=1, temperature=0.0, progress=False)


def test_class_labels_are_passed_to_the_prior():
    pipe = _pipe(num_classes=10)
    images = _run(pipe, batch_size=2, class_labels=[3, 4], output_type="latent")
    assert images.shape == (2, 1, 8, 8)
    assert torch.equal(images, _run(pipe, batch_size=2, class_labels=torch.tensor([3, 4]), output_type="latent"))


def test_rgb_pil_images():
    torch.manual_seed(0)
    prior = create_prior("pixelcnn_cifar10", sample_size=4, hidden_channels=12, num_layers=1, head_channels=12)
    images = _run(PixelPriorPipeline(prior), batch_size=2)
    assert [(im.mode, im.size) for im in images] == [("RGB", (4, 4))] * 2


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    with open(tmp_path / "model_index.json") as f:
        index = json.load(f)
    assert index["_class_name"] == "PixelPriorPipeline"
    assert index["prior"] == ["pixelprior", "PixelCNN"]
    written = [os.path.join(root, name) for root, _, names in os.walk(tmp_path) for name in names]
    assert written and all(name.endswith((".json", ".safetensors")) for name in written), written
    assert any(name.endswith(".safetensors") for name in written)

    loaded = PixelPriorPipeline.from_pretrained(tmp_path)
    assert type(loaded.prior) is type(pipe.prior) and _public(loaded.prior.config) == _public(pipe.prior.config)
    assert torch.equal(
        _run(loaded, 5, batch_size=3, output_type="latent"), _run(pipe, 5, batch_size=3, output_type="latent")
    )
    x = torch.randint(0, 2, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.prior.log_prob(x), pipe.prior.log_prob(x))


def test_make_image_grid():
    images = [Image.new("L", (5, 4), color=k) for k in range(5)]
    grid = make_image_grid(images, padding=1)  # 3 columns, 2 rows
    assert grid.size == (3 * 6 + 1, 2 * 5 + 1) and grid.mode == "L"
    assert grid.getpixel((1 + 6, 1)) == 1 and grid.getpixel((1, 1 + 5)) == 3
    assert grid.getpixel((0, 0)) == 128 and grid.getpixel((6, 1)) == 128  # gray padding between digits
    rgb = make_image_grid([Image.new("RGB", (2, 2))] * 2, padding=1, background=7)
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (7, 7, 7)
    assert make_image_grid(images, cols=5, padding=0, scale=2).size == (50, 8)
    with pytest.raises(ValueError, match="one size"):
        make_image_grid([Image.new("L", (5, 4)), Image.new("L", (4, 4))])
    with pytest.raises(ValueError, match="at least one"):
        make_image_grid([])


def test_inpainting_keeps_the_black_pixels_for_pil_numpy_and_torch_inputs():
    torch.manual_seed(0)
    pipe = PixelPriorPipeline(create_prior("pixelcnn_mnist", sample_size=6, num_values=256, hidden_channels=8))
    gray = np.arange(36, dtype=np.uint8).reshape(6, 6) * 7  # 256-level image
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[3:, 2:] = 255  # white: regenerate
    as_pil = _run(pipe, 1, image=Image.fromarray(gray), mask_image=Image.fromarray(mask), batch_size=3)
    kept = mask == 0
    assert len(as_pil) == 3
    assert all(np.array_equal(np.asarray(im)[kept], gray[kept]) for im in as_pil)
    assert any(not np.array_equal(np.asarray(im)[~kept], gray[~kept]) for im in as_pil)
    # The same inputs as NumPy arrays and torch tensors in [0, 1] give the same images.
    pil_latent = torch.as_tensor(np.stack([np.asarray(im) for im in as_pil]))[:, None].long()
    for image, mask_image in (
        (gray / 255.0, mask / 255.0),
        (torch.from_numpy(gray / 255.0)[None].float(), torch.from_numpy(mask / 255.0)[None, None].float()),
    ):
        latent = _run(pipe, 1, image=image, mask_image=mask_image, batch_size=3, output_type="latent")
        assert torch.equal(latent, pil_latent)


def test_inpainting_bad_inputs():
    pipe = _pipe()  # 8x8, 2 values
    image, mask = torch.rand(2, 1, 8, 8), torch.ones(1, 1, 8, 8)
    assert _run(pipe, image=image, mask_image=mask, output_type="latent").shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"image of shape \(B, 1, 8, 8\)"):
        _run(pipe, image=torch.rand(1, 1, 7, 8), mask_image=mask)
    with pytest.raises(ValueError, match=r"mask_image of shape \(B, 1, 8, 8\)"):
        _run(pipe, image=image, mask_image=torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="one mask_image or one per image"):
        _run(pipe, image=torch.rand(3, 1, 8, 8), mask_image=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="batch_size 1 or 2"):
        _run(pipe, image=image, mask_image=mask, batch_size=3)
    with pytest.raises(ValueError, match=r"image of shape \(B, 1, 8, 8\)"):  # 3 channels for a 1-channel prior
        _run(pipe, image=torch.rand(1, 3, 8, 8), mask_image=mask)
    with pytest.raises(ValueError, match="both image and mask_image"):
        _run(pipe, mask_image=mask)
