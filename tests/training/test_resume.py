"""Resuming is exact or refused, and no code runs from a checkpoint (issue 11: findings 1 and 4, the exploit).

One tiny run with checkpoints (module fixture) is copied for each case: a crafted payload in each of a checkpoint's
files, missing and corrupt state files, and every flag a resume may not silently change.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from pixelprior.training import TrainConfig, Trainer
from pixelprior.training.resume import EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, TRAINER_STATE_FILE, rng_file
from tests.training.test_loop import DIGITS

# test_loop's tiny PixelCNN on the binarized 8x8 digits, with EMA: 3 steps, a checkpoint after each.
BASE = dict(DIGITS, logger="jsonl", log_steps=1, max_steps=3, batch_size=4, learning_rate=1e-2, use_ema=True)
BASE.update(ema_decay=0.5, checkpointing_steps=1, max_train_samples=64, max_eval_samples=8, eval_batch_size=8)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run: its folder (checkpoint-1..3) and its final raw weights."""
    out = tmp_path_factory.mktemp("straight") / "run"
    trainer = Trainer(TrainConfig(output_dir=str(out), **BASE))
    trainer.run()
    return out, {k: v.clone() for k, v in trainer.prior.state_dict().items()}


def _copy_checkpoint(straight, tmp_path, step: int = 1):
    out = tmp_path / "resumed"
    shutil.copytree(straight[0] / f"checkpoint-{step}", out / f"checkpoint-{step}")
    return out


def _resume(out, **flags) -> Trainer:
    trainer = Trainer(TrainConfig(output_dir=str(out), resume_from_checkpoint="latest", **{**BASE, **flags}))
    trainer.run()
    return trainer


class _Payload:
    """Unpickling this runs a shell command (the classic ``__reduce__`` exploit)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_payload_is_real(tmp_path):
    # The crafted file does run code when unpickled the unsafe way: the tests below are not vacuous.
    torch.save({"state": _Payload(tmp_path / "marker")}, tmp_path / "payload.bin")
    torch.load(tmp_path / "payload.bin", weights_only=False)
    assert (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        (OPTIMIZER_FILE, "optimizer.bin (the optimizer state) was refused: it holds more than tensors"),
        (rng_file(0), "random_states_0.pkl (the random number generators' states) was refused"),
        (EMA_FILE, "ema.safetensors (the EMA weights) is corrupt"),
        (MODEL_FILE, "model.safetensors (the model's weights) is corrupt"),
        (TRAINER_STATE_FILE, "trainer_state.json is not readable JSON"),
        ("custom_checkpoint_0.pkl", None),  # Accelerate's scheduler pickle of older checkpoints: never opened
        ("scaler.pt", None),  # fp16's loss scaler: not read without fp16
    ],
)
def test_a_payload_in_any_checkpoint_file_never_runs(straight, tmp_path, name, refused):
    out = _copy_checkpoint(straight, tmp_path)
    marker = tmp_path / "marker"
    torch.save({"state": _Payload(marker)}, out / "checkpoint-1" / name)
    if refused is None:
        trainer = _resume(out)
        for key, value in trainer.prior.state_dict().items():
            torch.testing.assert_close(value, straight[1][key], rtol=0, atol=1e-6)
    else:
        with pytest.raises(ValueError, match=refused.replace("(", r"\(").replace(")", r"\)")):
            _resume(out)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "damage", "fatal"),
    [
        (OPTIMIZER_FILE, "missing", False),
        (OPTIMIZER_FILE, "garbage", False),
        (rng_file(0), "missing", False),
        (rng_file(0), "truncated", False),
        (EMA_FILE, "missing", False),
        (MODEL_FILE, "missing", True),
        (MODEL_FILE, "truncated", True),
        (TRAINER_STATE_FILE, "missing", True),
        (TRAINER_STATE_FILE, "legacy", True),  # an older pixelprior's: the step, no configuration to check
    ],
)
def test_a_damaged_state_file_stops_the_resume_naming_it(straight, tmp_path, name, damage, fatal):
    out = _copy_checkpoint(straight, tmp_path)
    path = out / "checkpoint-1" / name
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not a torch file at all")
    elif damage == "legacy":
        path.write_text(json.dumps({"step": 1, "nonfinite_steps": 0}))
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=f"Cannot resume .*{name}") as refused:
        _resume(out)
    assert ("--allow_inexact_resume" in str(refused.value)) != fatal
    if not fatal:  # asked for, the resume goes on without that state and says so
        trainer = _resume(out, allow_inexact_resume=True)
        assert any(name in note for note in trainer.inexact)
        with open(out / "train_results.json") as f:
            assert any(name in note for note in json.load(f)["inexact_resume"])
        with open(out / "logs" / "metrics.jsonl") as f:
            events = [json.loads(line) for line in f if '"event"' in line]
        assert events[0]["event"] == "resume" and name in events[0]["inexact"][0]


# Every flag the audit changed on a resume (issue 11, finding 4), and what the refusal must name.
CHANGES = [
    ({"learning_rate": 1e-5}, "--learning_rate 0.01 -> 1e-05"),
    ({"batch_size": 8}, "--batch_size 4 -> 8"),
    ({"gradient_accumulation_steps": 2}, "--gradient_accumulation_steps 1 -> 2"),
    ({"seed": 1}, "--seed 0 -> 1"),
    ({"binarize": False, "num_bits": 1}, "--binarize true -> false, --num_bits null -> 1"),
    ({"max_train_samples": 32}, "--max_train_samples 64 -> 32"),
    ({"lr_schedule": "cosine"}, '--lr_schedule "exponential" -> "cosine"'),
    ({"max_steps": 5}, "--max_steps 3 -> 5"),
    ({"use_ema": False}, "--use_ema true -> false"),
    ({"model_kwargs": {**DIGITS["model_kwargs"], "hidden_channels": 6}}, '"hidden_channels": 8'),
]


@pytest.mark.parametrize(("flags", "named"), CHANGES)
def test_a_changed_flag_is_refused_naming_old_and_new(straight, tmp_path, flags, named):
    out = _copy_checkpoint(straight, tmp_path)
    with pytest.raises(ValueError, match="Cannot resume .* exactly: flags differ") as refused:
        _resume(out, **flags)
    assert named in str(refused.value) and "--allow_config_change" in str(refused.value)


def test_max_steps_below_the_checkpoint_and_a_changed_architecture_are_clear_errors(straight, tmp_path):
    out = _copy_checkpoint(straight, tmp_path, step=3)
    with pytest.raises(ValueError, match=r"Expected --max_steps >= 3 \(the step of"):
        _resume(out, max_steps=2, allow_config_change=("max_steps",))
    wider = {"model_kwargs": {**DIGITS["model_kwargs"], "hidden_channels": 6}}
    with pytest.raises(ValueError, match=r"model.safetensors to hold the model's weights .*another architecture"):
        _resume(out, **wider, allow_config_change=("model_kwargs",))


def test_an_accepted_learning_rate_change_applies_from_the_resumed_step(straight, tmp_path):
    out = _copy_checkpoint(straight, tmp_path)
    trainer = _resume(out, learning_rate=1e-3, allow_config_change=("learning_rate",))
    with open(out / "logs" / "metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    lrs = [line["train/lr"] for line in lines if "train/lr" in line]
    assert lrs == [pytest.approx(1e-3 * trainer.lr_factor(step)) for step in (1, 2)]  # steps 2 and 3
    assert not all(torch.equal(v, straight[1][k]) for k, v in trainer.prior.state_dict().items())
    with open(out / "train_results.json") as f:
        changes = json.load(f)["config_changes"]
    assert changes == [{"step": 1, "name": "learning_rate", "old": 0.01, "new": 0.001}]
    assert lines[0] == {"step": 1, "event": "resume", "config_changes": changes, "inexact": []}
    # The record carries the change on: resuming the new run's last checkpoint with its flags is exact again.
    again = Trainer(
        TrainConfig(
            output_dir=str(out), resume_from_checkpoint=str(out / "checkpoint-3"), **{**BASE, "learning_rate": 1e-3}
        )
    ).run()
    assert again.config_changes == trainer.config_changes


def test_resume_into_a_folder_with_another_runs_checkpoints_is_refused(straight, tmp_path):
    # A checkpoint of another run beside the one resumed: never pruned or replaced, so the resume stops first.
    out = _copy_checkpoint(straight, tmp_path, step=1)
    other = tmp_path / "other"
    Trainer(TrainConfig(output_dir=str(other), **{**BASE, "max_steps": 2, "seed": 3})).run()
    shutil.copytree(other / "checkpoint-2", out / "checkpoint-2")
    with pytest.raises(ValueError, match=r"to hold nothing of another run for resuming .*checkpoint-2"):
        Trainer(TrainConfig(output_dir=str(out), resume_from_checkpoint=str(out / "checkpoint-1"), **BASE)).run()
    assert sorted(os.listdir(out / "checkpoint-2")) == sorted(os.listdir(other / "checkpoint-2"))


def test_another_number_of_processes_is_a_change_too():
    from pixelprior.training.options import options_as_json
    from pixelprior.training.resume import RunRecord, config_differences, describe_differences

    config = TrainConfig(output_dir="o", **BASE)
    record = RunRecord(step=3, config=options_as_json(config), run_id="r", num_processes=2)
    assert config_differences(record, config, num_processes=2) == {}
    differences = config_differences(record, config, num_processes=1)
    assert describe_differences(differences) == "--num_processes 2 -> 1"
    older = RunRecord(step=3, config={k: v for k, v in record.config.items() if k != "num_epochs"}, run_id="r")
    assert config_differences(older, config, num_processes=1) == {}  # a flag added since counts as its default
