"""VQ-VAE codes as a dataset: encoding real digits with a real tiny diffusers VQModel, the file, its metadata."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import VQModel
from safetensors import safe_open

from pixelprior.cli import main
from pixelprior.data import GridDataset, codes_metadata, encode_dataset, encode_to_file, load_codes, load_dataset
from pixelprior.distributions import bins_to_input
from pixelprior.vqmodel import encode_images, vqvae_identity, vqvae_latent_size
from tests.conftest import tiny_vqmodel

K = 8


@pytest.fixture(scope="module")
def vqvae_dir(tmp_path_factory):
    vqvae = tiny_vqmodel(28, K)
    folder = tmp_path_factory.mktemp("vqvae")
    vqvae.save_pretrained(folder)
    return folder


def test_encode_dataset_gives_the_quantizer_codes_independently_of_batching(vqvae_dir):
    vqvae = VQModel.from_pretrained(vqvae_dir)
    test = load_dataset("mnist5k", "test")
    subset = GridDataset(test.x[:40], 256, labels=test.labels[:40], num_classes=10)
    codes, labels = encode_dataset(vqvae, subset, batch_size=7, device="cpu", progress=False)
    assert codes.shape == (40, 1, 14, 14) and codes.dtype == torch.long
    assert (14, 14) == vqvae_latent_size(vqvae.config)
    assert torch.equal(labels, test.labels[:40])
    assert codes.unique().numel() > 1
    whole, _ = encode_dataset(vqvae, subset, batch_size=40, device="cpu", progress=False)
    assert torch.equal(codes, whole)
    # The codes are the VQModel's own choice: its forward pass decodes exactly these codebook vectors.
    with torch.no_grad():
        latents = vqvae.encode(bins_to_input(subset.x[:3], 256)).latents
        _, _, (_, _, indices) = vqvae.quantize(latents)
    assert torch.equal(codes[:3].flatten(), indices)
    assert torch.equal(encode_images(vqvae, bins_to_input(subset.x[:3], 256)), codes[:3, 0])


def test_encode_dataset_bad_inputs(vqvae_dir):
    vqvae = VQModel.from_pretrained(vqvae_dir)
    with pytest.raises(ValueError, match=r"sample_size \(28, 28\)"):
        encode_dataset(vqvae, GridDataset(torch.zeros(2, 1, 8, 8, dtype=torch.long), 256), progress=False)
    with pytest.raises(ValueError, match="in_channels=1"):
        encode_dataset(vqvae, GridDataset(torch.zeros(2, 3, 28, 28, dtype=torch.long), 256), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        encode_dataset(vqvae, GridDataset(torch.zeros(2, 1, 28, 28, dtype=torch.long), 256), batch_size=0)


def test_encode_to_file_and_load_codes(vqvae_dir, tmp_path, monkeypatch):
    path = str(tmp_path / "codes.safetensors")
    meta = encode_to_file(str(vqvae_dir), "mnist5k", path, splits=("test",), progress=False)
    assert meta["vqvae_path"] == str(vqvae_dir.resolve()) and meta["dataset"] == "mnist5k"
    assert meta["num_values"] == K and meta["latent_size"] == [14, 14] and meta["splits"] == ["test"]
    assert meta["num_classes"] == 10
    config = VQModel.from_pretrained(meta["vqvae_path"]).config
    assert meta["vqvae_config"] == json.loads(vqvae_identity(config)[0])
    assert meta["vqvae_config_sha256"] == vqvae_identity(config)[1]
    with safe_open(path, framework="pt") as f:
        assert sorted(f.keys()) == ["test_codes", "test_labels"]

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load (pickle) was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    test = load_codes(path, "test")
    assert (len(test), test.in_channels, test.num_values, test.sample_size) == (500, 1, K, (14, 14))
    assert torch.equal(test.labels, load_dataset("mnist5k", "test").labels) and test.num_classes == 10
    vqvae = VQModel.from_pretrained(vqvae_dir)
    expected, _ = encode_dataset(vqvae, load_dataset("mnist5k", "test"), progress=False)
    assert torch.equal(test.x, expected)
    with pytest.raises(ValueError, match=r"one of \['test'\]"):
        load_codes(path, "train")
    with pytest.raises(ValueError, match="no such file"):
        codes_metadata(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="ending in .safetensors"):
        encode_to_file(str(vqvae_dir), "mnist5k", str(tmp_path / "codes.pt"))


def test_a_safetensors_file_that_is_not_codes_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="pixelprior encode"):
        load_codes(str(tmp_path / "other.safetensors"), "train")


def test_cli_encode(vqvae_dir, tmp_path, capsys):
    output = tmp_path / "codes.safetensors"
    assert main(["encode", "--vqvae", str(vqvae_dir), "--output", str(output), "--device", "cpu"]) == 0
    assert "Wrote" in capsys.readouterr().out
    train, test = load_codes(str(output), "train"), load_codes(str(output), "test")
    assert (len(train), len(test)) == (4500, 500) and train.sample_size == (14, 14)
    with pytest.raises(SystemExit) as error:
        main(["encode", "--vqvae", str(vqvae_dir), "--output", str(tmp_path / "codes.npz")])
    assert error.value.code == 2
