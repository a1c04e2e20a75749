"""``--init_from`` (fine-tuning a trained or converted pipeline) and ``--model_config RUN_FOLDER``."""

from __future__ import annotations

import huggingface_hub
import pytest
import torch

from pixelprior.cli import main
from pixelprior.pipelines import PixelPriorPipeline
from pixelprior.training import TrainConfig, Trainer, train
from tests.pipelines.test_hub import _hub_cache

from .conftest import DIGITS_RUN, assert_cli_error

RUN = {k: v for k, v in DIGITS_RUN.items() if k not in ("model", "model_kwargs")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
    """A pipeline folder written by a short run (the EMA weights)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train(TrainConfig(output_dir=str(out), max_steps=8, logger="none", **DIGITS_RUN))
    return str(out)


def _arguments(prior) -> dict:
    return {k: v for k, v in prior.config.items() if not k.startswith("_")}


def _state(prior) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in prior.state_dict().items()}


def test_init_from_starts_from_the_pipeline_weights_and_fine_tunes(trained, tmp_path):
    saved = PixelPriorPipeline.from_pretrained(trained).prior
    trainer = Trainer(TrainConfig(init_from=trained, output_dir=str(tmp_path / "ft"), max_steps=4, **RUN))
    start = _state(trainer.prior)
    assert start.keys() == saved.state_dict().keys()
    assert all(torch.equal(start[k], v) for k, v in saved.state_dict().items())  # exactly the trained weights
    assert trainer.prior.dtype == torch.float32 and trainer.config.model_name == trained
    result = trainer.run()
    assert any(not torch.equal(start[k], v) for k, v in trainer.prior.state_dict().items())  # and trained on
    fresh = train(TrainConfig(output_dir=str(tmp_path / "fresh"), max_steps=4, **DIGITS_RUN))
    assert result.test_bits_per_dim < fresh.test_bits_per_dim  # 8 + 4 steps beat 4 from scratch


def test_model_config_takes_a_run_folder_architecture_only(trained, tmp_path):
    trainer = Trainer(TrainConfig(model_config=trained, output_dir=str(tmp_path / "o"), max_steps=1, **RUN))
    saved = PixelPriorPipeline.from_pretrained(trained).prior
    assert _arguments(trainer.prior) == _arguments(saved)
    assert not all(torch.equal(v, saved.state_dict()[k]) for k, v in trainer.prior.state_dict().items())


def test_what_init_from_refuses(trained, tmp_path, capsys):
    base = ["train", "--init_from", trained, "--dataset", "digits", "--binarize", "--output_dir", str(tmp_path / "o")]
    for flags, message in [
        (["--model", "pixelcnn_mnist"], "Expected exactly one of --model, --model_config or --init_from, got model="),
        (["--model_kwargs", '{"hidden_channels": 16, "dropout": 0.1}'], "hidden_channels=16 (the pipeline's: 8)"),
        (["--palette", "4"], "Expected no --palette with --init_from"),
    ]:
        assert_cli_error([*base, *flags], message, capsys)
    # The pipeline's own values and dropout are accepted.
    same = TrainConfig(init_from=trained, output_dir="o", model_kwargs={"hidden_channels": 8, "sample_size": [8, 8]})
    Trainer(TrainConfig(**{**vars(same), **RUN, "output_dir": str(tmp_path / "same")}))
    with pytest.raises(ValueError, match="no such folder"):
        Trainer(TrainConfig(init_from=str(tmp_path / "missing"), output_dir=str(tmp_path / "x"), **RUN))


def test_init_from_a_hub_repository_in_the_cache(trained, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _hub_cache(cache, "someone/digits-prior", trained)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the cache only, as HF_HUB_OFFLINE=1
    config = TrainConfig(init_from="someone/digits-prior", output_dir=str(tmp_path / "o"), max_steps=1, **RUN)
    trainer = Trainer(config)
    saved = PixelPriorPipeline.from_pretrained(trained).prior
    assert all(torch.equal(trainer.prior.state_dict()[k], v) for k, v in saved.state_dict().items())


def test_a_converted_image_gpt_fine_tunes_on_rgb_images(tmp_path, rgb_folder, monkeypatch):
    """issue 14: `pixelprior convert imagegpt` then `pixelprior train --init_from`; the clusters stay the palette."""
    pytest.importorskip("transformers")
    from tests.converters.test_imagegpt import hf_model, save_hf_folder

    source = save_hf_folder(hf_model(16, 1, 2, 8, 12, "quick_gelu"), tmp_path / "hf")
    assert main(["convert", "imagegpt", source, "--output_dir", str(tmp_path / "igpt")]) == 0
    converted = PixelPriorPipeline.from_pretrained(tmp_path / "igpt")
    argv = ["train", "--init_from", str(tmp_path / "igpt"), "--dataset", rgb_folder, "--output_dir"]
    argv += [str(tmp_path / "ft"), "--max_steps", "3", "--batch_size", "4", "--num_sample_images", "2"]
    assert main(argv) == 0
    tuned = PixelPriorPipeline.from_pretrained(tmp_path / "ft")
    assert torch.equal(tuned.palette.centers, converted.palette.centers)
    assert type(tuned.prior) is type(converted.prior) and _arguments(tuned.prior) == _arguments(converted.prior)
    image = tuned(batch_size=1, generator=torch.Generator().manual_seed(0), progress=False).images[0]
    assert image.mode == "RGB" and image.size == (8, 8)
