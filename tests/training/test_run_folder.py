"""One run owns its folder, nothing of another run is overwritten, and every file appears whole (issue 11: 2, 3, 5)."""

from __future__ import annotations

import json
import os

import pytest

from pixelprior.cli import main
from pixelprior.paths import check_writable_file
from pixelprior.training import TrainConfig, Trainer
from pixelprior.training import run_folder as rf
from tests.training.test_checkpoint import Crash, crash_at
from tests.training.test_loop import DIGITS

TINY = dict(DIGITS, logger="jsonl", max_steps=2, batch_size=4, max_train_samples=32, max_eval_samples=8)


def test_a_second_lock_on_a_folder_names_the_holder(tmp_path):
    held = rf.RunLock(str(tmp_path))
    with pytest.raises(ValueError, match=rf"got a run holding its lock .*\(PID {os.getpid()}\)"):
        rf.RunLock(str(tmp_path))  # flock locks are per open file: a second open conflicts even in this process
    held.release()
    rf.RunLock(str(tmp_path)).release()


def test_a_second_run_on_a_locked_folder_exits_2_at_once(tmp_path, capsys):
    held = rf.RunLock(str(tmp_path))
    flags = ["--model", "pixelcnn_mnist", "--model_kwargs", json.dumps(TINY["model_kwargs"]), "--dataset", "digits"]
    try:
        assert main(["train", *flags, "--binarize", "--output_dir", str(tmp_path), "--max_steps", "1"]) == 2
    finally:
        held.release()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"(PID {os.getpid()})" in err and "pixelprior train: error:" in err
    assert sorted(os.listdir(tmp_path)) == [rf.LOCK_FILE]  # it wrote nothing


def test_a_new_run_refuses_a_folder_with_another_runs_outputs_unless_told_to_move_them(tmp_path):
    out = tmp_path / "run"
    Trainer(TrainConfig(output_dir=str(out), checkpointing_steps=1, **TINY)).run()
    names = [name for name in os.listdir(out) if name != rf.LOCK_FILE]
    before = {name: sorted(os.listdir(out / name)) if (out / name).is_dir() else None for name in names}
    with pytest.raises(
        ValueError, match=r"to hold nothing of another run for a new run, got \['README.md', 'checkpoint-1'"
    ):
        Trainer(TrainConfig(output_dir=str(out), **TINY)).run()
    with pytest.raises(ValueError, match="hold nothing of another run"):  # 'latest' with no checkpoint: a new run
        os.rename(out / "checkpoint-1", tmp_path / "c1")
        os.rename(out / "checkpoint-2", tmp_path / "c2")
        Trainer(TrainConfig(output_dir=str(out), resume_from_checkpoint="latest", **TINY)).run()
    os.rename(tmp_path / "c1", out / "checkpoint-1")
    os.rename(tmp_path / "c2", out / "checkpoint-2")
    Trainer(TrainConfig(output_dir=str(out), overwrite_output_dir=True, seed=1, **TINY)).run()
    (aside,) = [name for name in os.listdir(out) if name.startswith(rf.OVERWRITTEN_PREFIX)]
    moved = {
        name: sorted(os.listdir(out / aside / name)) if (out / aside / name).is_dir() else None for name in before
    }
    assert moved == before  # all of it kept, nothing deleted
    with open(out / "train_results.json") as f:
        assert json.load(f)["config"]["seed"] == 1


def test_replace_atomically_keeps_the_old_file_on_a_failure(tmp_path):
    path = tmp_path / "results.json"
    rf.write_json(str(path), {"v": 1})
    with pytest.raises(RuntimeError), rf.replace_atomically(str(path)) as tmp:
        with open(tmp, "w") as f:
            f.write('{"v": 2')  # half written when the work fails
        raise RuntimeError("interrupted")
    assert json.loads(path.read_text()) == {"v": 1} and os.listdir(tmp_path) == ["results.json"]


@pytest.mark.parametrize("k", range(5))
def test_a_publication_interrupted_anywhere_is_finished_or_undone_whole(tmp_path, k):
    for name, text in (("model_index.json", "old"), ("prior/weights", "old")):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_text(text)
    folder = rf.begin_publishing(str(tmp_path))
    for name in ("model_index.json", "prior/weights", "train_results.json"):
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
            f.write("new")
    with crash_at(k):  # the three files' renames, then the removal of the emptied folder
        try:
            rf.publish_folder(str(tmp_path))
        except Crash:
            pass
    rf.finish_publishing(str(tmp_path))  # the next start
    texts = {(tmp_path / n).read_text() for n in ("model_index.json", "prior/weights", "train_results.json")}
    assert texts == {"new"} and not (tmp_path / rf.PUBLISHING).exists()


def test_unwritable_outputs_are_named_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="which is a file"):
        rf.prepare_output_dir(str(tmp_path / "file"))
    with pytest.raises(ValueError, match="that can be created, got .*file/run"):
        rf.prepare_output_dir(str(tmp_path / "file" / "run"))
    with pytest.raises(ValueError, match="Expected --output to be a file name, got .* which is a folder"):
        check_writable_file(str(tmp_path), "--output")
    with pytest.raises(ValueError, match="Expected --output to be a writable path"):
        check_writable_file(str(tmp_path / "file" / "grid.png"), "--output")
    check_writable_file(str(tmp_path / "new" / "grid.png"), "--output")
    assert os.listdir(tmp_path / "new") == []  # the probe is gone


def test_a_publication_killed_before_it_was_complete_leaves_the_old_files(tmp_path):
    (tmp_path / "model_index.json").write_text("old")
    folder = rf.begin_publishing(str(tmp_path))
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        f.write("ne")  # killed while the new pipeline was being written: no completion marker
    assert rf.finish_publishing(str(tmp_path)) == "removed"
    assert (tmp_path / "model_index.json").read_text() == "old" and not (tmp_path / rf.PUBLISHING).exists()


def test_a_full_disk_at_the_final_save_keeps_the_earlier_pipeline(tmp_path, monkeypatch):
    import errno

    import safetensors.torch
    import torch

    from pixelprior.pipelines import PixelPriorPipeline
    from pixelprior.training import OutputError

    out = tmp_path / "run"
    Trainer(TrainConfig(output_dir=str(out), checkpointing_steps=2, **TINY)).run()
    saved = PixelPriorPipeline.from_pretrained(out).prior.state_dict()
    real = safetensors.torch.save_file

    def full(tensors, filename, *args, **kwargs):
        if rf.PUBLISHING in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    more = dict(TINY, max_steps=3, allow_config_change=("max_steps",), resume_from_checkpoint="latest")
    with pytest.raises(OutputError, match=r"Could not write the pipeline into .*run: No space left on device \(the"):
        Trainer(TrainConfig(output_dir=str(out), checkpointing_steps=2, **more)).run()
    kept = PixelPriorPipeline.from_pretrained(out).prior.state_dict()
    assert all(torch.equal(kept[name], value) for name, value in saved.items())
    assert not (out / rf.PUBLISHING).exists()  # the partial copy is gone: its space is free again
