"""The ``pixelprior`` command: train and sample end to end in subprocesses, and clear errors for bad flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from pixelprior import create_prior
from pixelprior.cli import main
from pixelprior.pipelines import PixelPriorPipeline

TINY = json.dumps({"hidden_channels": 8, "num_layers": 1})


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pixelprior", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_train_then_sample(tmp_path):
    out = tmp_path / "run"
    trained = _run(
        "train", "--model", "pixelcnn_mnist", "--model_kwargs", TINY, "--dataset", "mnist5k", "--binarize",
        "--output_dir", str(out), "--max_steps", "5", "--batch_size", "8", "--learning_rate", "2e-3", "--seed", "1",
        "--max_train_samples", "200", "--max_eval_samples", "100",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    for line in ("train bits/dim:", "test bits/dim:", "test NLL:", "nats/image"):
        assert line in trained.stdout, trained.stdout
    assert (out / "model_index.json").is_file()

    grid = tmp_path / "grid.png"
    sampled = _run("sample", "--pipeline", str(out), "--batch_size", "4", "--output", str(grid), "--seed", "3")
    assert sampled.returncode == 0, sampled.stderr
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.size == (2 * (28 + 2) + 2, 2 * (28 + 2) + 2)  # 2 x 2 digits, padding 2


def test_bad_model_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "no_such_model", "--output_dir", "unused", "--binarize"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --model: expected a registered prior" in err and "pixelcnn_mnist" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["train", "--model", "pixelcnn_mnist"], "--output_dir"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--model_kwargs", "{nope"], "JSON object"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--model_kwargs", "[1]"], "JSON object"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--max_steps", "0"], "positive integer"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--learning_rate", "-1"], "positive number"),
        (["train", "--output_dir", "o"], "one of --model or --model_config"),
        (["train", "--model", "pixelcnn_mnist", "--model_config", "c.json", "--output_dir", "o"], "one of --model"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--lr_schedule", "linear"], "invalid choice"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--mixed_precision", "fp8"], "invalid choice"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--logger", "wandb"], "invalid choice"),
        (["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--lr_warmup_steps", "-1"], "integer >= 0"),
        (["sample", "--pipeline", "does/not/exist", "--output", "g.png"], "model_index.json"),
    ],
)
def test_bad_flags_exit_with_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_value_mismatch_says_what_to_pass(tmp_path, capsys):
    # A binary model (pixelcnn_mnist) on 256-level data: the ValueError becomes a one-line usage error.
    code = main(["train", "--model", "pixelcnn_mnist", "--model_kwargs", TINY, "--output_dir", str(tmp_path)])
    assert code == 2
    assert "pass --binarize" in capsys.readouterr().err


def test_unknown_dataset_is_a_usage_error(capsys):
    argv = ["train", "--model", "pixelcnn_mnist", "--output_dir", "unused", "--dataset", "no/such/folder"]
    assert main(argv) == 2
    assert "pixelprior train: error: Expected" in capsys.readouterr().err


def test_model_config_and_nonfinite_exit_status(tmp_path, capsys):
    # --model_config takes a saved prior's config.json; a NaN loss (lr 1e30) exits with status 1 naming the step.
    prior = create_prior("pixelcnn_mnist", hidden_channels=4, num_layers=1, sample_size=8)
    prior.save_pretrained(tmp_path / "saved")
    base = ["train", "--model_config", str(tmp_path / "saved" / "config.json"), "--dataset", "digits", "--binarize"]
    base += ["--max_steps", "3", "--batch_size", "4", "--max_eval_samples", "8", "--logger", "none"]
    assert main([*base, "--output_dir", str(tmp_path / "ok")]) == 0
    assert PixelPriorPipeline.from_pretrained(tmp_path / "ok").prior.config.hidden_channels == 4
    assert main([*base, "--output_dir", str(tmp_path / "nan"), "--learning_rate", "1e30"]) == 1
    assert "Non-finite training loss at step 2" in capsys.readouterr().err
    with open(tmp_path / "bad.json", "w") as f:
        json.dump({"hidden_channels": 4}, f)
    assert main(["train", "--model_config", str(tmp_path / "bad.json"), "--output_dir", str(tmp_path / "x")]) == 2
    assert "_class_name" in capsys.readouterr().err


def test_sample_class_conditional(tmp_path, capsys):
    torch.manual_seed(0)
    prior = create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1, num_classes=10)
    PixelPriorPipeline(prior).save_pretrained(tmp_path / "pipe")
    grid = tmp_path / "grid.png"
    base = ["sample", "--pipeline", str(tmp_path / "pipe"), "--batch_size", "3", "--output", str(grid)]
    assert main(base) == 0  # labels default to 0, 1, 2
    with Image.open(grid) as image:
        assert image.size == (2 * 30 + 2, 2 * 30 + 2)
    assert main([*base, "--class_labels", "7", "--cols", "3", "--scale", "2"]) == 0
    with Image.open(grid) as image:
        assert image.size == (2 * (3 * 30 + 2), 2 * (30 + 2))
    assert main([*base, "--class_labels", "11"]) == 2
    assert "class_labels in [0, 10)" in capsys.readouterr().err
