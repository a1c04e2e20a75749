"""The pieces a run is built from are checked against each other before any work: both splits, labels, VQModel."""

from __future__ import annotations

import shutil

import pytest
import torch

from pixelprior import create_prior
from pixelprior.data import GridDataset
from pixelprior.training import TrainConfig, Trainer, check_data_matches_model
from tests.conftest import tiny_vqmodel

CONFIG = TrainConfig(model="pixelcnn_mnist", output_dir="unused", binarize=True, num_bits=None)


def test_the_test_split_and_the_labels_are_checked_too():
    prior = create_prior("pixelcnn_mnist", hidden_channels=4, num_layers=1, sample_size=8, num_classes=10)
    fine = GridDataset(torch.zeros(4, 1, 8, 8, dtype=torch.long), 2, torch.arange(4), num_classes=10)
    check_data_matches_model(prior, fine, CONFIG, "train")
    other_grid = GridDataset(torch.zeros(4, 1, 7, 7, dtype=torch.long), 2, torch.arange(4), num_classes=10)
    with pytest.raises(ValueError, match=r"'mnist5k' test grids of shape \(C, H, W\) = \(1, 7, 7\)"):
        check_data_matches_model(prior, other_grid, CONFIG, "test")
    unlabelled = GridDataset(torch.zeros(4, 1, 8, 8, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\(test\) has no labels"):
        check_data_matches_model(prior, unlabelled, CONFIG, "test")
    too_high = GridDataset(torch.zeros(4, 1, 8, 8, dtype=torch.long), 2, torch.tensor([0, 1, 2, 12]))
    with pytest.raises(ValueError, match=r"Expected test labels of 'mnist5k' in \[0, 10\) .*got label 12"):
        check_data_matches_model(prior, too_high, CONFIG, "test")


def test_codes_whose_vqmodel_is_gone_fail_before_any_work(tmp_path):
    from pixelprior.data import encode_to_file

    tiny_vqmodel(8, 8).save_pretrained(tmp_path / "vqvae")
    codes = str(tmp_path / "codes.safetensors")
    h, w = encode_to_file(str(tmp_path / "vqvae"), "digits", codes, progress=False)["latent_size"]
    shutil.rmtree(tmp_path / "vqvae")
    config = TrainConfig(
        model="pixelcnn_mnist",
        model_kwargs={"hidden_channels": 4, "num_layers": 1, "num_values": 8, "sample_size": [h, w]},
        dataset=f"codes:{codes}",
        output_dir=str(tmp_path / "run"),
        max_steps=1,
    )
    with pytest.raises(ValueError, match="vqvae"):
        Trainer(config)
    assert not (tmp_path / "run").exists()
