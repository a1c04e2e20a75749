"""Every ```python and ```bash block of the README runs, in order, at a tiny size: the README cannot drift.

The blocks run as a reader would run them, one after the other in one working folder (a temporary one), Python
blocks in one shared namespace (a later block uses what an earlier one defined) and bash blocks command by command
in this process (``pixelprior ...`` and ``python -m pixelprior ...`` through :func:`pixelprior.cli.main`,
``python examples/X.py ...`` and ``python benchmarks/X.py ...`` through :mod:`runpy`), each with exit status 0.

What is changed before running is written down here, and each entry must still match the README (a stale entry
fails): :data:`TINY_FLAGS` caps the sizes of commands (steps, batches, models, evaluated images), :data:`TEXT`
replaces what the README leaves to the reader (placeholders, input files, the Hub ids of released checkpoints, which
are made here as tiny random-weight files of the same formats). Blocks and commands that cannot run here are listed
in :data:`NOT_RUN` and :data:`NOT_RUN_COMMANDS` with the reason; any other block or command that fails to run, or
that these tables do not cover, fails the test, naming its README line.
"""

from __future__ import annotations

import contextlib
import json
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image

from pixelprior.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Blocks not run, by the start of their first line: why.
NOT_RUN = {
    "make demo   # venv + install": "make demo installs the package and trains for minutes; make test is this suite",
    'make demo TORCH_SPEC="torch==': "installs torch from the network",
    "pip install torch --index-url": "installs packages from the network (tests/test_packaging.py builds the wheel "
    "and installs it with --user and --target)",
    "pip wheel . --no-deps -w dist": "builds and installs a wheel: tests/test_packaging.py does",
    "pixelprior train  --model NAME --dataset SPEC": "a synopsis with placeholders (NAME, SPEC, DIR, IMAGES); the "
    "commands it lists run in their own sections",
    "python benchmarks/training.py --models": "needs a GPU (--device cuda) and the papers' model sizes",
}

# Commands of run blocks that are not run, by their start: why.
NOT_RUN_COMMANDS = {
    "accelerate launch --config_file integrations/accelerate/cpu_multiprocess.yaml": "two gloo processes (~15 s): "
    "tests/training/test_processes.py launches this config as shipped, at a tiny size",
    "accelerate launch --config_file integrations/accelerate/single_gpu.yaml": "needs a GPU",
    "accelerate launch --config_file integrations/accelerate/multi_gpu.yaml": "needs GPUs",
    "accelerate launch --config_file integrations/accelerate/fsdp.yaml": "needs GPUs (Accelerate's FSDP)",
    "accelerate launch --config_file integrations/accelerate/multi_node.yaml": "needs several nodes (tests/training/"
    "test_processes.py runs the config as two one-process nodes on one machine)",
}

# Size caps of the commands: flag -> largest value run; with the flags appended to every `pixelprior train`.
TINY_FLAGS = {
    "--max_steps": 3,
    "--batch_size": 8,
    "--eval_steps": 2,
    "--sample_steps": 2,
    "--checkpointing_steps": 2,
}
TINY_TRAIN = ["--max_eval_samples", "16", "--num_sample_images", "2"]
TINY_MODEL = {"hidden_channels": 8, "num_layers": 1}  # merged into every --model_kwargs of `pixelprior train`
TINY_SCRIPT = {  # flags appended to the scripts the README runs
    "examples/train_vqvae.py": ["--max_steps", "2", "--block_out_channels", "4", "8", "8"],
}

# README text -> what runs (placeholders, inputs the README leaves to the reader, the tiny sizes of Python blocks).
TEXT = {
    "...the same flags...": "{previous}",  # the flags of the block's previous command
    'convert_imagegpt("openai/imagegpt-small")': 'convert_imagegpt("tiny-imagegpt")',  # made by the test
    "a.png b.png ...": "a.png b.png",  # two test digits, written by the test
    "--pipeline DIR": "--pipeline my-prior",  # the pipeline the Python section saved
    "--background BG_DIR": "--background my-prior",
    "data = compress(model, x)": "x = x[:2]\ndata = compress(model, x)",  # 2 of the 16 digits
}


@dataclass
class Block:
    lang: str
    line: int  # of its first code line in README.md, 1-based
    text: str

    @property
    def first_line(self) -> str:
        return next(line for line in self.text.splitlines() if line.strip())


def readme_blocks() -> list[Block]:
    """The fenced blocks of the README, with their language (``""`` for untagged output listings)."""
    blocks, lines = [], README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if match:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            indent = len(lines[i]) - len(lines[i].lstrip())
            body = "\n".join(line[indent:] for line in lines[i + 1 : end])
            blocks.append(Block(match.group(1), i + 2, body))
            i = end
        i += 1
    return blocks


def _lookup(table: dict[str, str], line: str) -> str | None:
    return next((key for key in table if line.strip().startswith(key)), None)


def commands(text: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if shlex.split(line, comments=True)]


def _cap(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in TINY_FLAGS:
            out[i + 1] = str(min(int(out[i + 1]), TINY_FLAGS[arg]))
    return out


def tiny_argv(argv: list[str]) -> list[str]:
    """A README command at the test's size (:data:`TINY_FLAGS`, :data:`TINY_TRAIN`, :data:`TINY_MODEL`)."""
    argv = _cap(argv)
    if argv[:2] == ["pixelprior", "train"]:
        if "--model_kwargs" in argv:
            i = argv.index("--model_kwargs") + 1
            argv[i] = json.dumps({**json.loads(argv[i]), **TINY_MODEL})
        else:
            argv += ["--model_kwargs", json.dumps(TINY_MODEL)]
        argv += TINY_TRAIN
    if argv[0] == "python" and argv[1] in TINY_SCRIPT:
        argv += TINY_SCRIPT[argv[1]]
    return argv


def run_command(argv: list[str], where: str) -> None:
    if argv[0] == "pixelprior" or argv[:3] == ["python", "-m", "pixelprior"]:
        args = argv[1:] if argv[0] == "pixelprior" else argv[3:]
        try:
            status = main(args)
        except SystemExit as exit_info:  # argparse's usage errors
            status = exit_info.code
        assert status == 0, f"{where}: {shlex.join(argv)} exited with status {status}"
        return
    if argv[0] == "python" and argv[1].endswith(".py"):
        saved = sys.argv
        sys.argv = [str(ROOT / argv[1]), *argv[2:]]
        try:
            runpy.run_path(str(ROOT / argv[1]), run_name="__main__")
        except SystemExit as exit_info:
            assert exit_info.code in (0, None), f"{where}: {shlex.join(argv)} exited with status {exit_info.code}"
        finally:
            sys.argv = saved
        return
    raise AssertionError(
        f"{where}: the README command {shlex.join(argv)!r} is neither run nor listed in NOT_RUN_COMMANDS"
    )


def substitute(text: str, used: set[str], previous: str = "") -> str:
    for old, new in TEXT.items():
        if old in text:
            used.add(old)
            text = text.replace(old, new.format(previous=previous))
    return text


def run_bash(block: Block, used: set[str], skipped: set[str]) -> None:
    previous = ""
    for command in commands(block.text):
        where = f"README.md:{block.line}"
        key = _lookup(NOT_RUN_COMMANDS, command)
        if key is not None:
            skipped.add(key)
            continue
        argv = shlex.split(substitute(command, used, previous), comments=True)
        run_command(tiny_argv(argv), where)
        previous = " ".join(shlex.split(command, comments=True)[2:])  # its flags, after `pixelprior train`


# ------------------------------------------------------------------------------------------- the inputs
def _write_inputs(folder: Path) -> None:
    """What the README leaves to the reader: two digit PNGs, the released checkpoints' formats at a tiny size."""
    from pixelprior.data import load_dataset

    digits = load_dataset("mnist5k", "test", binarize=True).x[:2]  # (2, 1, 28, 28) in {0, 1}
    for name, digit in zip(("a.png", "b.png"), digits, strict=True):
        Image.fromarray((digit[0].numpy() * 255).astype(np.uint8), mode="L").save(folder / name)
    from tests.converters.test_imagegpt import hf_model, save_hf_folder
    from tests.converters.test_pixelcnn_pp import tiny, to_port

    save_hf_folder(hf_model(16, 1, 2, 8, 12, "quick_gelu").float(), folder / "tiny-imagegpt")  # for imagegpt-small
    torch.save(to_port(tiny(C=3, R=1, F=8, M=3).float()), folder / "pcnn_lr.0.00040_nr-resnet5_nr-filters160_889.pth")


def test_every_readme_code_block_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # nothing from the Hub
    _write_inputs(tmp_path)
    namespace: dict = {"__name__": "readme"}
    used, skipped, ran = set(), set(), 0
    for block in readme_blocks():
        key = _lookup(NOT_RUN, block.first_line)
        if block.lang not in ("python", "bash") or key is not None:
            skipped.add(key)
            continue
        if block.lang == "python":
            code = compile(substitute(block.text, used), f"README.md:{block.line}", "exec")
            with contextlib.redirect_stdout(sys.stderr):
                exec(code, namespace)
        else:
            run_bash(block, used, skipped)
        ran += 1
    capsys.readouterr()
    assert ran >= 9, ran
    # Every table entry still matches the README: nothing listed here that the README no longer has.
    assert set(NOT_RUN) <= skipped, sorted(set(NOT_RUN) - skipped)
    assert set(NOT_RUN_COMMANDS) <= skipped, sorted(set(NOT_RUN_COMMANDS) - skipped)
    assert used == set(TEXT), sorted(set(TEXT) - used)
    # What the blocks promise, spot-checked on their outputs.
    assert (tmp_path / "runs" / "mnist" / "README.md").exists() and (tmp_path / "runs" / "mnist" / "logs").is_dir()
    assert (tmp_path / "vq_samples.png").exists() and (tmp_path / "out" / "a.png").exists()
    with Image.open(tmp_path / "out" / "a.png") as decoded, Image.open(tmp_path / "a.png") as original:
        same = np.array_equal(np.asarray(decoded.convert("L")), np.asarray(original.convert("L")))
        assert same, (decoded.mode, original.mode)  # the README's lossless claim, on its own commands
