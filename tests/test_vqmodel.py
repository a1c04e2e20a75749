"""The VQModel glue: grids from the config, eval mode, and loading that names what is wrong with a path."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from pixelprior.vqmodel import (
    eval_mode,
    load_vqmodel,
    load_vqmodel_config,
    vqvae_folder,
    vqvae_identity,
    vqvae_latent_size,
)
from tests.conftest import tiny_vqmodel


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vqvae")
    model = tiny_vqmodel(8, 4)
    model.save_pretrained(folder)
    return folder, model


def test_load_vqmodel_gives_the_saved_weights_in_eval_mode(saved, tmp_path):
    folder, model = saved
    loaded = load_vqmodel(folder)
    assert not loaded.training and vqvae_latent_size(loaded.config) == (4, 4)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert vqvae_identity(loaded.config) == vqvae_identity(model.config)
    pipeline = tmp_path / "pipeline"  # a pipeline folder: its vqvae/ component
    model.save_pretrained(pipeline / "vqvae")
    assert (
        vqvae_folder(pipeline) == str(pipeline / "vqvae") and load_vqmodel_config(pipeline)["num_vq_embeddings"] == 4
    )


def test_eval_mode_restores_the_mode(saved):
    model = saved[1].train()
    with eval_mode(model):
        assert not model.training
    assert model.training
    model.eval()


def test_bad_vqmodel_paths_are_named(saved, tmp_path, monkeypatch):
    folder, _ = saved
    with pytest.raises(ValueError, match=r"got '/nonexistent/vqvae': no such folder"):
        load_vqmodel("/nonexistent/vqvae")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match=r"got 'runs/vqvae': no such folder"):  # a path, not the Hub id runs/vqvae
        load_vqmodel("runs/vqvae")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="which is a file"):
        load_vqmodel(str(tmp_path / "file"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="with a config.json, got .*empty', which has none"):
        load_vqmodel(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{nope")
    with pytest.raises(ValueError, match="Expected a VQModel folder or Hub id, got .*broken"):
        load_vqmodel(str(broken))
    unet = tmp_path / "unet"  # diffusers' VQModel.from_pretrained loads this folder as a VQModel of random weights
    unet.mkdir()
    config = json.loads((folder / "config.json").read_text())
    (unet / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="config of a diffusers VQModel .* got _class_name='UNet2DModel'"):
        load_vqmodel(str(unet))


def test_weights_that_do_not_fit_are_refused(saved, tmp_path):
    import shutil

    folder, _ = saved
    shutil.copytree(folder, tmp_path / "partial")
    weights = next((tmp_path / "partial").glob("*.safetensors"))
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if not k.startswith("quantize.")}, weights)
    with pytest.raises(ValueError, match=r"missing keys: \['quantize.embedding.weight'\]"):
        load_vqmodel(tmp_path / "partial")
    save_file({**state, "quantize.embedding.weight": torch.zeros(3, 2)}, weights)
    with pytest.raises(ValueError, match="fit its config"):
        load_vqmodel(tmp_path / "partial")
    weights.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="fit its config"):
        load_vqmodel(tmp_path / "partial")
