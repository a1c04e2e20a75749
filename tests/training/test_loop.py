"""The training loop end to end, in process: exact resumption, EMA in evaluation and saving, non-finite losses."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil

import pytest
import torch

from pixelprior.pipelines import PixelPriorPipeline
from pixelprior.training import NonFiniteLossError, TrainConfig, Trainer, evaluate, train
from tests.conftest import tiny_vqmodel

# PixelCNN++ with dropout on 8-bit digits: resuming must restore the RNG (dropout masks), Adam, the EMA, the
# cosine schedule and the data position (6 steps x 2 micro-batches cross the 40-image epochs of 5 micro-batches).
RESUMABLE = dict(
    model="pixelcnn_pp_mnist",
    model_kwargs={"hidden_channels": 8, "num_layers": 1, "num_mixtures": 2, "dropout": 0.5},
    max_train_samples=40,
    max_eval_samples=30,
    max_steps=6,
    batch_size=8,
    gradient_accumulation_steps=2,
    learning_rate=3e-3,
    lr_schedule="cosine",
    lr_warmup_steps=2,
    max_grad_norm=1.0,
    use_ema=True,
    ema_decay=0.8,
    checkpointing_steps=3,
    log_steps=1,
    eval_batch_size=16,
)


def _jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight = Trainer(TrainConfig(output_dir=str(straight_dir), **RESUMABLE))
    straight_result = straight.run()
    assert sorted(os.listdir(straight_dir / "checkpoint-3")) == [  # no scheduler pickle: the lr follows from the step
        "ema.safetensors",
        "model.safetensors",
        "optimizer.bin",
        "random_states_0.pkl",
        "trainer_state.json",
    ]

    # Step 3's checkpoint, alone in a fresh folder with a half-written later one: resume from "latest".
    shutil.copytree(straight_dir / "checkpoint-3", resumed_dir / "checkpoint-3")
    os.makedirs(resumed_dir / ".tmp-checkpoint-5")
    resumed = Trainer(TrainConfig(output_dir=str(resumed_dir), resume_from_checkpoint="latest", **RESUMABLE))
    resumed_result = resumed.run()
    assert resumed_result.resumed_from == str(resumed_dir / "checkpoint-3")
    assert not (resumed_dir / ".tmp-checkpoint-5").exists()

    raw = straight.prior.state_dict()
    for name, value in resumed.prior.state_dict().items():
        torch.testing.assert_close(value, raw[name], rtol=0, atol=1e-6, msg=name)
    for name, value in resumed.ema.shadow.items():
        torch.testing.assert_close(value, straight.ema.shadow[name], rtol=0, atol=1e-6, msg=name)
    assert resumed_result.test_bits_per_dim == pytest.approx(straight_result.test_bits_per_dim, abs=1e-6)
    # The learning rates and losses of steps 4-6 continue the uninterrupted run's exactly.
    logged = [r for r in _jsonl(straight_dir / "logs/metrics.jsonl") if "train/lr" in r and r["step"] > 3]
    relogged = [r for r in _jsonl(resumed_dir / "logs/metrics.jsonl") if "train/lr" in r]
    assert [r["train/lr"] for r in relogged] == [r["train/lr"] for r in logged]
    assert [r["train/loss"] for r in relogged] == pytest.approx([r["train/loss"] for r in logged], abs=1e-6)


def test_ema_weights_are_evaluated_and_saved(tmp_path):
    config = TrainConfig(
        model="pixelcnn_mnist",
        model_kwargs={"hidden_channels": 8, "num_layers": 1},
        binarize=True,
        output_dir=str(tmp_path),
        max_steps=8,
        batch_size=8,
        learning_rate=1e-2,
        use_ema=True,
        ema_decay=0.9,
        max_train_samples=64,
        max_eval_samples=40,
        logger="none",
    )
    trainer = Trainer(config)
    result = trainer.run()
    saved = PixelPriorPipeline.from_pretrained(tmp_path).prior
    for name, value in saved.state_dict().items():
        if name in trainer.ema.shadow:
            torch.testing.assert_close(value, trainer.ema.shadow[name], rtol=0, atol=0)
    assert any(not torch.equal(p, trainer.ema.shadow[n]) for n, p in trainer.prior.named_parameters())
    assert evaluate(saved, trainer.test_set) == pytest.approx(result.test_bits_per_dim, abs=1e-6)
    assert evaluate(trainer.prior, trainer.test_set) != pytest.approx(result.test_bits_per_dim, abs=1e-6)


# A tiny PixelCNN on the binarized 8x8 digits, for the runs that only need a few quick steps.
DIGITS = dict(
    model="pixelcnn_mnist",
    model_kwargs={"sample_size": 8, "hidden_channels": 8, "num_layers": 2},
    dataset="digits",
    binarize=True,
    logger="none",
    num_sample_images=2,
)


def test_compiled_training_matches_eager(tmp_path):
    # --compile (inductor) trains the same model: 2 micro-batches, EMA, evaluation and the saved pipeline. The mode
    # with CUDA graphs runs as plain inductor on a CPU, through the same per-step marking and loss copies.
    config = dict(DIGITS, max_steps=4, batch_size=8, gradient_accumulation_steps=2, max_eval_samples=64)
    config.update(use_ema=True, ema_decay=0.5)
    eager = Trainer(TrainConfig(output_dir=str(tmp_path / "eager"), **config))
    eager_result = eager.run()
    compiled = Trainer(
        TrainConfig(output_dir=str(tmp_path / "compiled"), compile=True, compile_mode="reduce-overhead", **config)
    )
    compiled_result = compiled.run()
    assert isinstance(compiled.objective, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.accelerator.state.dynamo_plugin.mode == "reduce-overhead"
    for (name, a), (_, b) in zip(eager.prior.named_parameters(), compiled.prior.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert compiled_result.test_bits_per_dim == pytest.approx(eager_result.test_bits_per_dim, abs=1e-5)
    saved = PixelPriorPipeline.from_pretrained(tmp_path / "compiled").prior  # no "_orig_mod." prefixes
    assert evaluate(saved, compiled.test_set) == pytest.approx(compiled_result.test_bits_per_dim, abs=1e-6)


def test_runs_in_one_process_keep_their_own_settings(tmp_path):
    # Accelerate's per-process state must not carry one run's precision (or compile setting) into the next.
    config = dict(DIGITS, max_steps=2, batch_size=4, max_eval_samples=8)
    for run, precision in enumerate(("no", "bf16", "no")):  # a folder per run: a new run never reuses one
        trainer = Trainer(TrainConfig(output_dir=str(tmp_path / f"{run}"), mixed_precision=precision, **config))
        assert trainer.accelerator.mixed_precision == precision
        assert math.isfinite(trainer.run().test_bits_per_dim)


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 autocast exists on a GPU")
def test_fp16_on_a_cpu_is_refused_rather_than_silently_float32(tmp_path):
    with pytest.raises(ValueError, match="Expected --mixed_precision bf16 or no on cpu, got 'fp16'"):
        Trainer(TrainConfig(output_dir=str(tmp_path), mixed_precision="fp16", **DIGITS))


def test_nonfinite_loss_stops_or_is_skipped(tmp_path):
    # A learning rate of 1e30 really blows the weights up: step 1 is finite, step 2's loss is NaN.
    config = TrainConfig(
        model="pixelcnn_mnist",
        model_kwargs={"hidden_channels": 8, "num_layers": 2},
        binarize=True,
        output_dir=str(tmp_path / "stop"),
        max_steps=5,
        batch_size=8,
        learning_rate=1e30,
        checkpointing_steps=1,
        max_train_samples=32,
        max_eval_samples=16,
        logger="none",
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 2 .*The last good checkpoint is .*checkpoint-1"):
        train(config)
    written = sorted(n for n in os.listdir(tmp_path / "stop") if n != ".pixelprior.lock")  # the run's lock file
    assert written == ["checkpoint-1"]  # nothing written after the bad step

    # Skipping them trains on to the end, but a model whose bits/dim are NaN is not saved (the run fails).
    skipping = dataclasses.replace(config, output_dir=str(tmp_path / "skip"), skip_nonfinite=True)
    with pytest.raises(NonFiniteLossError, match="final bits/dim are not finite.*No pipeline was saved"):
        train(skipping)
    assert not (tmp_path / "skip" / "model_index.json").exists()
    with open(tmp_path / "skip" / "checkpoint-5" / "trainer_state.json") as f:
        assert json.load(f)["nonfinite_steps"] == 4


def test_codes_dataset_trains_a_vq_prior_pipeline(tmp_path):
    from diffusers import VQModel

    from pixelprior.data import encode_to_file
    from pixelprior.pipelines import VQPriorPipeline

    vqvae = tiny_vqmodel(8, 8)
    vqvae.save_pretrained(tmp_path / "vqvae")
    codes = str(tmp_path / "codes.safetensors")
    meta = encode_to_file(str(tmp_path / "vqvae"), "digits", codes, progress=False)
    h, w = meta["latent_size"]
    config = TrainConfig(
        model="pixelcnn_mnist",
        model_kwargs={"hidden_channels": 8, "num_layers": 1, "num_values": 8, "sample_size": [h, w]},
        dataset=f"codes:{codes}",
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        batch_size=8,
        sample_steps=2,
        num_sample_images=4,
        max_eval_samples=16,
        logger="none",
    )
    train(config)
    assert (tmp_path / "run" / "samples" / "step-2.png").is_file()
    pipe = VQPriorPipeline.from_pretrained(tmp_path / "run")
    assert pipe.prior.num_values == 8 and isinstance(pipe.vqvae, VQModel)


def test_tensorboard_logger_writes_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = dict(RESUMABLE, max_steps=2, checkpointing_steps=None, eval_steps=2, use_ema=False)
    train(TrainConfig(output_dir=str(tmp_path / "run"), logger="tensorboard", **config))
    events = EventAccumulator(str(tmp_path / "run" / "logs" / "pixelprior"))
    events.Reload()
    assert {"train/loss", "train/lr", "test/bits_per_dim"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]


class _NaNLossAt(Trainer):
    """A run whose loss is NaN at the given (0-based) steps, as a diverging batch would make it."""

    def __init__(self, config: TrainConfig, bad_steps) -> None:
        super().__init__(config)
        self.bad_steps = set(bad_steps)

    def micro_step(self, last: bool) -> torch.Tensor:
        loss = super().micro_step(last)
        return loss * math.nan if self.step in self.bad_steps else loss


def test_skipped_steps_are_counted_and_a_run_that_never_trained_saves_nothing(tmp_path):
    config = dict(DIGITS, max_steps=4, batch_size=4, max_eval_samples=8, skip_nonfinite=True, logger="jsonl")
    result = _NaNLossAt(TrainConfig(output_dir=str(tmp_path / "some"), **config), bad_steps=[1]).run()
    assert result.nonfinite_steps == 1 and (tmp_path / "some" / "model_index.json").exists()
    with pytest.raises(NonFiniteLossError, match="all 4 of its steps were skipped.*No pipeline was saved"):
        _NaNLossAt(TrainConfig(output_dir=str(tmp_path / "all"), **config), bad_steps=range(4)).run()
    assert not (tmp_path / "all" / "model_index.json").exists()
    with open(tmp_path / "all" / "logs" / "metrics.jsonl") as f:
        assert json.loads(f.readlines()[-1])["event"] == "failed"


def test_a_run_that_ends_non_finite_keeps_the_earlier_good_pipeline(tmp_path):
    config = dict(DIGITS, max_steps=2, batch_size=4, max_eval_samples=8, checkpointing_steps=2)
    train(TrainConfig(output_dir=str(tmp_path), **config))
    good = PixelPriorPipeline.from_pretrained(tmp_path).prior.state_dict()
    diverging = dict(config, max_steps=4, learning_rate=1e30, skip_nonfinite=True, resume_from_checkpoint="latest")
    diverging["allow_config_change"] = ("max_steps", "learning_rate", "skip_nonfinite")
    with pytest.raises(NonFiniteLossError, match="final bits/dim are not finite"):
        train(TrainConfig(output_dir=str(tmp_path), **diverging))
    kept = PixelPriorPipeline.from_pretrained(tmp_path).prior.state_dict()
    assert all(torch.equal(kept[name], value) for name, value in good.items())
