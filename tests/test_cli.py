"""The ``pixelprior`` command: train and sample end to end in subprocesses, and clear errors for bad flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

import pixelprior
from pixelprior import create_prior
from pixelprior.cli import OneLineParser, main
from pixelprior.cli import train as train_command
from pixelprior.cli.train import config_from_args
from pixelprior.pipelines import PixelPriorPipeline, make_image_grid
from pixelprior.training import TrainConfig
from pixelprior.training.options import option_info, option_type

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
        (["train", "--output_dir", "o"], "one of --model, --model_config or --init_from"),
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


def test_sample_one_row_per_class(tmp_path, capsys):
    torch.manual_seed(0)
    PixelPriorPipeline(
        create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1, sample_size=6, num_classes=3)
    ).save_pretrained(tmp_path / "pipe")
    base = ["sample", "--pipeline", str(tmp_path / "pipe"), "--output", str(tmp_path / "rows.png")]
    assert main([*base, "--per_class", "2", "--seed", "5"]) == 0
    pipe = PixelPriorPipeline.from_pretrained(tmp_path / "pipe")
    labels = [0, 0, 1, 1, 2, 2]  # row k: class k
    expected = pipe(batch_size=6, class_labels=labels, generator=torch.Generator().manual_seed(5), progress=False)
    with Image.open(tmp_path / "rows.png") as grid:
        assert grid.size == (2 * 8 + 2, 3 * 8 + 2)  # 2 columns, 3 rows of 6x6 images
        assert grid.tobytes() == make_image_grid(expected.images, cols=2).tobytes()
    for flags, message in [
        (["--per_class", "2", "--batch_size", "4"], "expected no --batch_size with it"),
        (["--per_class", "2", "--class_labels", "1", "--cols", "2"], "expected no --class_labels or --cols"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*base, *flags])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    PixelPriorPipeline(create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1, sample_size=6)).save_pretrained(
        tmp_path / "unconditional"
    )
    with pytest.raises(SystemExit):
        main(["sample", "--pipeline", str(tmp_path / "unconditional"), "--output", "x.png", "--per_class", "2"])
    assert "expected a class-conditional pipeline" in capsys.readouterr().err


# ------------------------------------------------------------------------------- flags derived from TrainConfig
def _train_parser() -> argparse.ArgumentParser:
    return train_command.add_parser(OneLineParser(prog="pixelprior").add_subparsers())


def _field_default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def test_every_train_config_field_is_a_flag_with_its_default_and_no_flag_is_not_a_field():
    parser = _train_parser()
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(actions) == set(fields)  # no flag without a field, no field without a flag
    for name, field in fields.items():
        action = actions[name]
        assert f"--{name}" in action.option_strings
        assert action.default == _field_default(field), name
        assert action.required == (name == "output_dir"), name  # the one field with neither default nor None
        assert action.help.startswith(option_info(field).help.replace("%", "%%")), name


_CANDIDATES = {
    int: ["1", "3", "0", "-2", "2.5", "1e3", "x", "true", "4294967296"],
    float: ["0.5", "1", "1e-3", "0", "-1", "1.5", "NaN", "nan", "inf", "Infinity", "x"],
    dict: ['{"hidden_channels": 8}', "{}", "[1]", "{nope", '"x"'],
    tuple: ["learning_rate", "learning_rate,max_steps", ","],
}


def _cases():
    for field in dataclasses.fields(TrainConfig):
        kind, info = option_type(TrainConfig, field.name), option_info(field)
        if kind.base is bool:
            continue
        texts = [*info.choices, "bogus"] if info.choices else _CANDIDATES.get(kind.base, ["some/path", "1"])
        if field.name == "model":
            texts = ["pixelcnn_mnist", "no_such_prior"]
        for text in texts:
            yield field.name, text


@pytest.mark.parametrize(("name", "text"), list(_cases()))
def test_flags_and_train_config_accept_and_refuse_the_same_values(name, text):
    # The command line's check (argparse type, choices, then TrainConfig) against the library's (TrainConfig),
    # given the value a Python user would write for that text.
    base = {"model": "pixelcnn_mnist", "output_dir": "o", "compile": name == "compile_mode"}
    if name == "model_config":
        base["model"] = None
    kind = option_type(TrainConfig, name)
    value = text
    if kind.base is not str:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            pass
    if kind.base is tuple and isinstance(value, str):
        value = tuple(v for v in value.split(",") if v)
    try:
        TrainConfig(**{**base, name: value})
        library_accepts = True
    except ValueError:
        library_accepts = False
    argv = ["--output_dir", "o", f"--{name}", text]
    if base["model"] is not None and name != "model":
        argv += ["--model", base["model"]]
    argv += ["--compile"] if base["compile"] else []
    parser = _train_parser()
    try:
        config_from_args(parser.parse_args(argv), parser)
        cli_accepts = True
    except SystemExit:
        cli_accepts = False
    assert cli_accepts == library_accepts, (name, text)


def test_version_and_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"pixelprior {pixelprior.__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--batch_size", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err == "pixelprior train: error: argument --batch_size: expected a positive integer, got '0'\n"
