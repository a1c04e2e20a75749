"""The training loop: it lowers test bits/dim, evaluates exactly, checks data against model, saves a pipeline."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pixelprior import create_prior
from pixelprior.data import GridDataset, load_dataset
from pixelprior.pipelines import PixelPriorPipeline
from pixelprior.training import (
    TrainConfig,
    build_prior,
    check_data_matches_model,
    evaluate,
    nats_per_image,
    train,
)

TINY = {"hidden_channels": 16, "num_layers": 2}


@pytest.fixture(scope="module")
def test_set() -> GridDataset:
    return load_dataset("mnist5k", "test", binarize=True)


def test_short_run_lowers_test_bits_per_dim(tmp_path, test_set):
    config = TrainConfig(
        model="pixelcnn_mnist", model_kwargs=TINY, binarize=True, output_dir=str(tmp_path), max_steps=60, batch_size=32
    )
    torch.manual_seed(config.seed)  # train() seeds the same way before building the model
    untrained = evaluate(create_prior("pixelcnn_mnist", **TINY), test_set)
    result = train(config)
    assert result.test_bits_per_dim < untrained - 0.1, (untrained, result.test_bits_per_dim)
    assert result.test_nll_nats == pytest.approx(result.test_bits_per_dim * 784 * math.log(2))

    with open(tmp_path / "train_results.json") as f:
        saved = json.load(f)
    assert saved["test_bits_per_dim"] == result.test_bits_per_dim and saved["config"]["max_steps"] == 60

    pipe = PixelPriorPipeline.from_pretrained(tmp_path)
    assert evaluate(pipe.prior, test_set) == pytest.approx(result.test_bits_per_dim, abs=1e-6)
    images = pipe(batch_size=1, generator=torch.Generator().manual_seed(0), output_type="latent", progress=False)
    assert images.images.shape == (1, 1, 28, 28)


def test_class_conditional_run(tmp_path):
    kwargs = {**TINY, "num_classes": 10}
    config = TrainConfig(
        model="pixelcnn_mnist", model_kwargs=kwargs, binarize=True, output_dir=str(tmp_path), max_steps=2, batch_size=4
    )
    result = train(config)
    assert math.isfinite(result.test_bits_per_dim)
    assert PixelPriorPipeline.from_pretrained(tmp_path).prior.num_classes == 10


def test_evaluate_is_exact_over_the_whole_split():
    torch.manual_seed(0)
    prior = create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1, sample_size=6).double()
    x = torch.randint(0, 2, (7, 1, 6, 6), generator=torch.Generator().manual_seed(1))
    data = GridDataset(x, num_values=2)
    with torch.no_grad():
        expected = prior.bits_per_dim(x).mean().item()
    assert evaluate(prior, data, batch_size=3) == pytest.approx(expected, rel=1e-12)  # last batch is partial
    assert evaluate(prior, data, batch_size=100) == pytest.approx(expected, rel=1e-12)
    assert nats_per_image(1.0, 784) == pytest.approx(784 * math.log(2))


def _config(binarize: bool, **model_kwargs) -> TrainConfig:
    return TrainConfig(model="pixelcnn_mnist", model_kwargs=model_kwargs, binarize=binarize, output_dir="unused")


def test_data_and_model_must_agree(test_set):
    gray = GridDataset(torch.zeros(2, 1, 28, 28, dtype=torch.long), num_values=256)
    with pytest.raises(ValueError, match="pass --binarize"):
        check_data_matches_model(create_prior("pixelcnn_mnist", **TINY), gray, _config(False))
    with pytest.raises(ValueError, match=r"num_values\": 2}' or drop --binarize"):
        check_data_matches_model(create_prior("pixelcnn_mnist", **TINY, num_values=256), test_set, _config(True))
    with pytest.raises(ValueError, match="sample_size"):
        check_data_matches_model(create_prior("pixelcnn_mnist", **TINY, sample_size=8), test_set, _config(True))
    unlabelled = GridDataset(torch.zeros(2, 1, 28, 28, dtype=torch.long), num_values=2)
    with pytest.raises(ValueError, match="labelled data"):
        check_data_matches_model(create_prior("pixelcnn_mnist", **TINY, num_classes=10), unlabelled, _config(True))
    with pytest.raises(ValueError, match="num_classes >= 10"):
        check_data_matches_model(create_prior("pixelcnn_mnist", **TINY, num_classes=3), test_set, _config(True))
    check_data_matches_model(create_prior("pixelcnn_mnist", **TINY), test_set, _config(True))


def test_build_prior_refuses_unknown_model_kwargs():
    with pytest.raises(ValueError, match=r"got unknown \['hiden_channels'\]"):
        build_prior(_config(True, hiden_channels=16))
    assert build_prior(_config(True, **TINY)).config.hidden_channels == 16


@pytest.mark.parametrize(
    "bad",
    [{"max_steps": 0}, {"batch_size": -1}, {"eval_batch_size": 2.5}, {"learning_rate": 0}, {"model_kwargs": "[]"}],
)
def test_train_config_checks(bad):
    with pytest.raises(ValueError, match="Expected"):
        TrainConfig(model="pixelcnn_mnist", output_dir="unused", **bad)


# 8-bit digits with the logistic mixture: the likelihood PixelCNN++ and PixelSNAIL were made for.
EIGHT_BIT = {
    "pixelcnn_pp_mnist": {"hidden_channels": 8, "num_layers": 1, "num_mixtures": 2, "dropout": 0.0},
    "pixelsnail_cifar10": {
        "in_channels": 1,
        "sample_size": 28,
        "hidden_channels": 8,
        "num_layers": 1,
        "num_res_blocks": 1,
        "key_channels": 4,
        "value_channels": 8,
        "num_mixtures": 2,
        "dropout": 0.0,
    },
}


@pytest.mark.parametrize("model", sorted(EIGHT_BIT))
def test_logistic_mixture_models_train_on_8bit_digits(tmp_path, model):
    config = TrainConfig(
        model=model,
        model_kwargs=EIGHT_BIT[model],
        output_dir=str(tmp_path),
        max_steps=40,
        batch_size=16,
        learning_rate=3e-3,
        eval_batch_size=500,
        max_eval_samples=100,  # the first 100 images of each split: the final evaluation stays quick
    )
    test_8bit = torch.utils.data.Subset(load_dataset("mnist5k", "test"), range(100))
    torch.manual_seed(config.seed)
    untrained = evaluate(create_prior(model, **EIGHT_BIT[model]), test_8bit)
    result = train(config)
    assert result.test_nll_nats is None  # nats per image are reported for binary data only
    assert result.test_bits_per_dim < untrained - 0.5, (untrained, result.test_bits_per_dim)
    prior = PixelPriorPipeline.from_pretrained(tmp_path).prior
    assert prior.distribution.num_values == 256 and type(prior.distribution).__name__ == "LogisticMixtureLikelihood"
