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
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert {a.dest for a in parser._actions if a.dest != "help"} == set(fields)  # no flag without a field, and back
    actions = {a.dest: a for a in parser._actions if f"--{a.dest}" in a.option_strings}
    for name, field in fields.items():
        action = actions[name]
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
    assert (
        err
        == "pixelprior train: error: argument --batch_size/--train_batch_size: expected a positive integer, got '0'\n"
    )


# ------------------------------------------------------------------------ bad inputs: one line, status 2, no work
# Each row is a bad input a careless or hostile user gave (issue 11's audit, by area). The command must exit with
# status 2 and one line "pixelprior COMMAND: error: ..." naming what was expected, before any work.
TINY_8 = {"hidden_channels": 4, "num_layers": 1, "sample_size": 8}
DIGITS_TINY = ["--model", "pixelcnn_mnist", "--dataset", "digits", "--binarize", "--max_steps", "1"]
DIGITS_TINY += ["--model_kwargs", json.dumps(TINY_8)]
BAD_TRAIN_FLAGS = [
    (["--model", "no_such_model", "--output_dir", "{out}"], "expected a registered prior"),
    (
        ["--model", "pixelcnn_mnist", "--model_config", "c.json", "--output_dir", "{out}"],
        "one of --model, --model_config or --init_from",
    ),
    (["--output_dir", "{out}"], "exactly one of --model, --model_config or --init_from, got none"),
    (
        ["--model_config", "{tmp}/missing.json", "--output_dir", "{out}"],
        "a JSON file, a prior's folder or a run folder",
    ),
    (["--model_config", "{tmp}", "--output_dir", "{out}"], "a JSON file, a prior's folder or a run folder"),
    (["--model_config", "{tmp}/bad.json", "--output_dir", "{out}"], "got invalid JSON"),
    (["--model_config", "{tmp}/noclass.json", "--output_dir", "{out}"], "with a '_class_name'"),
    ([*DIGITS_TINY, "--model_kwargs", "{nope", "--output_dir", "{out}"], "expected a JSON object"),
    ([*DIGITS_TINY, "--model_kwargs", "[1]", "--output_dir", "{out}"], "expected a JSON object"),
    ([*DIGITS_TINY, "--model_kwargs", '{"hiden_channels": 4}', "--output_dir", "{out}"], "unknown ['hiden_channels']"),
    ([*DIGITS_TINY, "--dataset", "no_such_dataset", "--output_dir", "{out}"], "Expected a dataset name"),
    ([*DIGITS_TINY, "--dataset", "{tmp}/no/folder", "--output_dir", "{out}"], "Expected an image folder"),
    ([*DIGITS_TINY, "--dataset", "codes:{tmp}/none.safetensors", "--output_dir", "{out}"], "no such file"),
    ([*DIGITS_TINY, "--max_steps", "0", "--output_dir", "{out}"], "--max_steps: expected a positive integer"),
    (
        [*DIGITS_TINY, "--batch_size", "-1", "--output_dir", "{out}"],
        "--batch_size/--train_batch_size: expected a positive",
    ),
    ([*DIGITS_TINY, "--learning_rate", "nan", "--output_dir", "{out}"], "expected a positive number"),
    ([*DIGITS_TINY, "--learning_rate", "inf", "--output_dir", "{out}"], "expected a positive number"),
    ([*DIGITS_TINY, "--lr_decay", "1.5", "--output_dir", "{out}"], "expected a number in (0, 1]"),
    ([*DIGITS_TINY, "--ema_decay", "1", "--output_dir", "{out}"], "expected a number in [0, 1)"),
    ([*DIGITS_TINY, "--num_bits", "9", "--output_dir", "{out}"], "expected an integer in [1, 8]"),
    ([*DIGITS_TINY, "--num_bits", "3", "--output_dir", "{out}"], "binarize or num_bits, not both"),
    ([*DIGITS_TINY, "--seed", "-1", "--output_dir", "{out}"], "expected an integer in [0, 2**32)"),
    ([*DIGITS_TINY, "--eval_batch_size", "2.5", "--output_dir", "{out}"], "expected a positive integer"),
    ([*DIGITS_TINY, "--gradient_accumulation_steps", "0", "--output_dir", "{out}"], "expected a positive integer"),
    ([*DIGITS_TINY, "--checkpointing_steps", "0", "--output_dir", "{out}"], "expected a positive integer"),
    ([*DIGITS_TINY, "--lr_schedule", "linear", "--output_dir", "{out}"], "invalid choice"),
    ([*DIGITS_TINY, "--compile_mode", "reduce-overhead", "--output_dir", "{out}"], "Expected --compile"),
    ([*DIGITS_TINY, "--mixed_precision", "fp16", "--output_dir", "{out}"], "Expected --mixed_precision bf16 or no"),
    ([*DIGITS_TINY, "--allow_config_change", "lr", "--output_dir", "{out}"], "--allow_config_change to name flags"),
    ([*DIGITS_TINY[:4], *DIGITS_TINY[5:], "--output_dir", "{out}"], "pass --binarize"),  # 8-bit data, binary model
    ([*DIGITS_TINY, "--model_kwargs", '{"sample_size": 28}', "--output_dir", "{out}"], "grids of shape (C, H, W)"),
    ([*DIGITS_TINY, "--model_kwargs", json.dumps({**TINY_8, "num_classes": 3}), "--output_dir", "{out}"], ">= 10"),
    ([*DIGITS_TINY, "--batch_size", "4096", "--output_dir", "{out}"], "at least batch_size x processes"),
    ([*DIGITS_TINY, "--output_dir", "{tmp}/file"], "which is a file"),
    ([*DIGITS_TINY, "--output_dir", "{tmp}/file/run"], "can be created, got"),
    ([*DIGITS_TINY, "--output_dir", "{tmp}/pipe"], "to hold nothing of another run for a new run"),
    ([*DIGITS_TINY, "--output_dir", "{out}", "--resume_from_checkpoint", "{tmp}/nothing"], "'latest' or a checkpoint"),
    ([*DIGITS_TINY, "--output_dir", "{out}", "--resume_from_checkpoint", "{tmp}"], "'latest' or a checkpoint-STEP"),
]


@pytest.fixture
def bad_input_files(tmp_path):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "noclass.json").write_text('{"hidden_channels": 4}')
    (tmp_path / "file").write_text("x")
    torch.manual_seed(0)
    prior = create_prior("pixelcnn_mnist", hidden_channels=4, num_layers=1, num_classes=10, sample_size=8)
    PixelPriorPipeline(prior).save_pretrained(tmp_path / "pipe")
    return tmp_path


def _one_line_usage_error(command: str, argv: list[str], capsys) -> str:
    try:
        code = main([command, *argv])
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("train:", "sampling", "encode:"))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"pixelprior {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize(("argv", "expected"), BAD_TRAIN_FLAGS)
def test_bad_train_flags_are_one_line_errors_before_any_work(bad_input_files, argv, expected, capsys):
    tmp = bad_input_files
    argv = [a.replace("{tmp}", str(tmp)).replace("{out}", str(tmp / "out")) for a in argv]
    assert expected in _one_line_usage_error("train", argv, capsys)
    assert not (tmp / "out").exists() or os.listdir(tmp / "out") == [".pixelprior.lock"]  # nothing trained


BAD_SAMPLE_AND_ENCODE = [
    ("sample", ["--pipeline", "{tmp}/nope", "--output", "{tmp}/g.png"], "expected a folder with a model_index.json"),
    ("sample", ["--pipeline", "{tmp}", "--output", "{tmp}/g.png"], "expected a folder with a model_index.json"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.jpg"], "expected a .png file name"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/dir.png"], "which is a folder"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/file/g.png"], "under the file"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--batch_size", "0"], "positive integer"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--temperature", "0"], "positive number"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--temperature", "nan"], "positive number"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--temperature", "inf"], "positive number"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--class_labels", "11"], "[0, 10)"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--class_labels", "-1"], "[0, 10)"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--class_labels", "x"], "invalid int"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--scale", "0"], "positive integer"),
    ("sample", ["--pipeline", "{tmp}/pipe", "--output", "{tmp}/g.png", "--cols", "-2"], "positive integer"),
    (
        "encode",
        ["--vqvae", "{tmp}/none", "--output", "{tmp}/c.safetensors"],
        "Expected a VQModel folder (VQModel.save_pretrained)",
    ),
    ("encode", ["--vqvae", "{tmp}/pipe", "--output", "{tmp}/c.npz"], "expected a .safetensors file name"),
    ("encode", ["--vqvae", "{tmp}/pipe", "--output", "{tmp}/dir.safetensors"], "which is a folder"),
    ("encode", ["--vqvae", "{tmp}/pipe", "--output", "{tmp}/file/c.safetensors"], "under the file"),
    ("encode", ["--vqvae", "{tmp}/pipe", "--output", "{tmp}/c.safetensors", "--batch_size", "0"], "positive integer"),
]


@pytest.mark.parametrize(("command", "argv", "expected"), BAD_SAMPLE_AND_ENCODE)
def test_bad_sample_and_encode_inputs_are_one_line_errors_before_any_work(
    bad_input_files, command, argv, expected, capsys
):
    tmp = bad_input_files
    (tmp / "dir.png").mkdir()
    (tmp / "dir.safetensors").mkdir()
    assert expected in _one_line_usage_error(command, [a.replace("{tmp}", str(tmp)) for a in argv], capsys)
    assert not list(tmp.glob("g.*")) and not list(tmp.glob("c.*"))  # nothing written


def test_diffusers_flag_names_are_aliases(tmp_path):
    parser = _train_parser()
    argv = ["--model", "pixelcnn_mnist", "--output_dir", "o", "--train_batch_size", "8", "--report_to", "tensorboard"]
    args = parser.parse_args([*argv, "--dataset_name", "user/butterflies"])
    assert (args.batch_size, args.logger, args.dataset) == (8, "tensorboard", "hf:user/butterflies")
    assert parser.parse_args([*argv, "--dataset_name", "digits"]).dataset == "digits"  # a pixelprior spec stays
    assert parser.parse_args([*argv, "--train_data_dir", "digits"]).dataset == "folder:digits"
    assert parser.parse_args(argv).dataset == "mnist5k"  # an alias does not change the field's default
    config = config_from_args(
        parser.parse_args([*argv, "--num_epochs", "3", "--gradient_accumulation_steps", "2"]), parser
    )
    assert config.total_steps(num_train_images=100, num_processes=2) == 9  # ceil(3 x floor(100 / 16) / 2)
    assert TrainConfig(model="pixelcnn_mnist", output_dir="o").total_steps(100) == 1000
    with pytest.raises(SystemExit):
        config_from_args(parser.parse_args([*argv, "--num_epochs", "3", "--max_steps", "5"]), parser)


def test_a_library_message_on_several_lines_is_printed_on_one():
    from pixelprior.cli import one_line

    assert one_line(OSError("We couldn't connect to the Hub.\n\n  Check your connection.\n")) == (
        "We couldn't connect to the Hub. Check your connection."
    )
