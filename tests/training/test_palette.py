"""``--palette``: RGB folders become colour ids for the model and RGB images again in the saved pipeline."""

from __future__ import annotations

import json
import os

import pytest
import torch

from pixelprior.cli import main
from pixelprior.data import ColorPalette, load_dataset
from pixelprior.pipelines import PixelPriorPipeline
from pixelprior.training import TrainConfig, Trainer, train

from .conftest import assert_cli_error

# iGPT-S's registered configuration (image_gpt_s_cifar10: 512 colours, 32x32) at a tiny size, 16 colours of 8x8
IGPT = dict(
    model="image_gpt_s_cifar10",
    model_kwargs={"sample_size": 8, "hidden_channels": 16, "num_layers": 1, "num_heads": 2, "num_values": 16},
    batch_size=4,
    num_sample_images=2,
    logger="none",
)


def test_image_gpt_trains_on_an_rgb_folder_from_the_cli_and_samples_rgb(tmp_path, rgb_folder):
    out = tmp_path / "igpt"
    argv = ["train", "--model", "image_gpt_s_cifar10", "--dataset", rgb_folder, "--palette", "16", "--output_dir"]
    argv += [str(out), "--model_kwargs", json.dumps(IGPT["model_kwargs"]), "--max_steps", "2", "--batch_size", "4"]
    assert main([*argv, "--num_sample_images", "2"]) == 0
    pipe = PixelPriorPipeline.from_pretrained(out)
    # The palette is the seeded k-means of the training images (--seed 0), fitted once.
    train_images = load_dataset(rgb_folder, "train").x
    expected = ColorPalette.fit(train_images, num_colors=16, seed=0)
    assert torch.equal(pipe.palette.centers, expected.centers)
    image = pipe(batch_size=1, generator=torch.Generator().manual_seed(0), progress=False).images[0]
    assert image.mode == "RGB" and image.size == (8, 8)
    assert sorted(os.listdir(out / "palette")) == ["palette.safetensors"]


def test_the_model_learns_the_ids_of_the_nearest_colours_and_a_saved_palette_is_used_as_is(tmp_path, rgb_folder):
    fixed = ColorPalette.fit(load_dataset(rgb_folder, "train").x, num_colors=16, seed=3)
    fixed.save(tmp_path / "fixed.safetensors")
    trainer = Trainer(
        TrainConfig(dataset=rgb_folder, palette=str(tmp_path / "fixed.safetensors"), output_dir=str(tmp_path), **IGPT)
    )
    assert torch.equal(trainer.palette.centers, fixed.centers)
    test_images = load_dataset(rgb_folder, "test").x
    assert torch.equal(trainer.test_set.x.long(), fixed.encode(test_images))  # (N, 1, 8, 8) ids
    assert trainer.train_set.num_values == 16 and trainer.train_set.in_channels == 1


def test_a_resume_takes_the_checkpoint_palette_and_refuses_another(tmp_path, rgb_folder, monkeypatch):
    out = str(tmp_path / "run")
    train(TrainConfig(dataset=rgb_folder, palette="16", output_dir=out, max_steps=2, checkpointing_steps=1, **IGPT))
    saved = ColorPalette.load(os.path.join(out, "checkpoint-1", "palette.safetensors"))

    def no_refit(*args, **kwargs):
        raise AssertionError("the palette was fitted again on resuming")

    monkeypatch.setattr(ColorPalette, "fit", no_refit)
    checkpoint = os.path.join(out, "checkpoint-1")
    resume = dict(dataset=rgb_folder, output_dir=out, max_steps=2, resume_from_checkpoint=checkpoint)
    trainer = Trainer(TrainConfig(palette="16", **resume, **IGPT))
    assert torch.equal(trainer.palette.centers, saved.centers)
    for palette, message in [("8", '--palette "16" -> "8"'), (None, '--palette "16" -> null')]:
        with pytest.raises(ValueError, match=message):
            Trainer(TrainConfig(palette=palette, **resume, **IGPT))
    # the palette is a state file like the others: exact or refused, naming the file
    os.remove(os.path.join(checkpoint, "palette.safetensors"))
    with pytest.raises(ValueError, match=r"checkpoint-1/palette.safetensors \(the colour palette\) is missing"):
        Trainer(TrainConfig(palette="16", **resume, **IGPT))
    monkeypatch.undo()
    result = train(TrainConfig(palette="16", allow_inexact_resume=True, **resume, **IGPT))
    assert result.inexact_resume == [
        f"resumed at step 1 without {checkpoint}/palette.safetensors (the colour palette) is missing: continued with "
        "a palette fitted again"
    ]


def test_what_palette_refuses(tmp_path, rgb_folder, capsys):
    base = ["train", "--model", "image_gpt_s_cifar10", "--output_dir", str(tmp_path / "o"), "--palette"]
    cases = [
        (["16", "--dataset", "digits"], "Expected RGB training images for --palette (3 channels), got 1 channel(s)."),
        ([str(tmp_path / "none.safetensors")], "argument --palette: expected a number of colours >= 2"),
        (["1"], "argument --palette: expected a number of colours >= 2"),
    ]
    for flags, message in cases:
        assert_cli_error([*base, *flags], message, capsys)
    (tmp_path / "junk.safetensors").write_bytes(b"not a palette")
    with pytest.raises(ValueError, match="to be a palette file"):
        Trainer(TrainConfig(palette=str(tmp_path / "junk.safetensors"), dataset=rgb_folder, output_dir="o", **IGPT))
