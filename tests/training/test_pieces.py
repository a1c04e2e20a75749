"""The training loop's tested pieces: learning-rate schedules, the sharded data order, the EMA, checkpoint folders,
gradient checkpointing and the configuration checks."""

from __future__ import annotations

import math
import os

import pytest
import torch

from pixelprior.training import EMA, ShardedBatchSampler, TrainConfig, enable_gradient_checkpointing, lr_factor
from pixelprior.training.checkpoint import (
    begin_checkpoint,
    commit_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    remove_leftovers,
    resolve_resume,
)
from tests.conftest import tiny_prior


def test_lr_schedules_are_pure_functions_of_the_step():
    exponential = lr_factor("exponential", decay=0.9)
    assert [exponential(s) for s in range(3)] == pytest.approx([1.0, 0.9, 0.81])
    assert lr_factor("constant", warmup_steps=4)(1) == pytest.approx(0.5)
    cosine = lr_factor("cosine", warmup_steps=2, max_steps=12)
    values = [cosine(s) for s in range(13)]
    assert values[:3] == pytest.approx([0.5, 1.0, 1.0]) and values[7] == pytest.approx(0.5) and values[12] == 0.0
    assert all(a >= b for a, b in zip(values[1:], values[2:], strict=False))
    # A scheduler rebuilt at step 5 from its saved state continues the sequence exactly.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    straight = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    lrs = []
    for _ in range(10):
        lrs.append(straight.get_last_lr()[0])
        opt.step()
        straight.step()
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    resumed = torch.optim.lr_scheduler.LambdaLR(opt2, lr_factor("cosine", warmup_steps=2, max_steps=12))
    opt3 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    partial = torch.optim.lr_scheduler.LambdaLR(opt3, cosine)
    for _ in range(5):
        opt3.step()
        partial.step()
    resumed.load_state_dict(partial.state_dict())
    for s in range(5, 10):
        assert resumed.get_last_lr()[0] == lrs[s]
        opt2.step()
        resumed.step()
    with pytest.raises(ValueError, match="Expected schedule"):
        lr_factor("linear")


def test_sampler_shards_are_disjoint_and_resume_exactly():
    n, b, p = 23, 3, 2
    per_epoch = n // (b * p)
    streams = [iter(ShardedBatchSampler(n, b, p, r, seed=5)) for r in range(p)]
    batches = [[next(s) for _ in range(2 * per_epoch + 1)] for s in streams]
    for k in range(per_epoch):  # epoch 0: every image at most once, processes disjoint
        assert not set(batches[0][k]) & set(batches[1][k])
    seen = [i for k in range(per_epoch) for r in range(p) for i in batches[r][k]]
    assert len(seen) == len(set(seen)) == per_epoch * b * p
    assert batches[0][0] != batches[0][per_epoch]  # a new permutation each epoch
    resumed = iter(ShardedBatchSampler(n, b, p, 1, seed=5, start=per_epoch - 1))
    assert [next(resumed) for _ in range(3)] == batches[1][per_epoch - 1 : per_epoch + 2]
    with pytest.raises(ValueError, match="at least batch_size x processes"):
        ShardedBatchSampler(5, 3, 2, 0)
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchSampler(50, 3, 2, 2)


def test_ema_is_a_polyak_average_swapped_in_and_out():
    model = torch.nn.Linear(2, 1)
    start = model.weight.detach().clone()
    ema = EMA(model, decay=0.75)
    assert torch.equal(ema.shadow["weight"], start)  # initialised from the weights, not zero
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], start + 1.0)  # 0.75 * w + 0.25 * (w + 4)
    with ema.applied_to(model):
        assert torch.allclose(model.weight, start + 1.0)
    assert torch.allclose(model.weight, start + 4.0)
    other = EMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"weight": start})
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_checkpoint_folders_are_atomic_and_limited(tmp_path):
    out = str(tmp_path)
    assert latest_checkpoint(out) is None and resolve_resume(out, "latest") is None
    for step in (2, 10, 4):
        tmp = begin_checkpoint(out, step)
        open(os.path.join(tmp, "model.safetensors"), "w").close()
        commit_checkpoint(tmp, out, step)
    # A crash mid-write leaves only a .tmp- folder: never picked, removed by the next run.
    os.makedirs(tmp_path / ".tmp-checkpoint-99")
    assert latest_checkpoint(out) == str(tmp_path / "checkpoint-10")
    assert [s for s, _ in list_checkpoints(out)] == [2, 4, 10]
    prune_checkpoints(out, 2, log=lambda _: None)
    assert [s for s, _ in list_checkpoints(out)] == [4, 10]
    assert remove_leftovers(out) == [str(tmp_path / ".tmp-checkpoint-99")]
    assert sorted(os.listdir(out)) == ["checkpoint-10", "checkpoint-4"]
    assert resolve_resume(out, str(tmp_path / "checkpoint-4")) == str(tmp_path / "checkpoint-4")
    with pytest.raises(ValueError, match="checkpoint-STEP folder"):
        resolve_resume(out, str(tmp_path / "nothing"))


def test_trainer_gradient_checkpointing_is_the_priors():
    """The trainer's switch is the prior's own ``enable_gradient_checkpointing`` (its gradients are tested for every
    model in tests/models/test_gradient_checkpointing.py)."""
    prior = tiny_prior("pixelcnn_mnist")
    assert not prior.is_gradient_checkpointing
    assert enable_gradient_checkpointing(prior) > 0
    assert prior.is_gradient_checkpointing
    with pytest.raises(ValueError, match="ModuleList"):
        enable_gradient_checkpointing(torch.nn.Linear(1, 1))


@pytest.mark.parametrize(
    "bad",
    [
        {"gradient_accumulation_steps": 0},
        {"lr_schedule": "linear"},
        {"lr_decay": 1.5},
        {"ema_decay": 1.0},
        {"mixed_precision": "fp8"},
        {"logger": "wandb"},
        {"max_grad_norm": 0.0},
        {"checkpointing_steps": 0},
        {"lr_warmup_steps": -1},
        {"model_config": "x.json"},
        {"compile_mode": "reduce-overhead"},  # without compile=True
        {"compile": True, "compile_mode": "fast"},
    ],
)
def test_train_config_checks_the_new_flags(bad):
    with pytest.raises(ValueError, match="Expected"):
        TrainConfig(model="pixelcnn_mnist", output_dir="unused", **bad)
    assert math.isclose(TrainConfig(model="pixelcnn_mnist", output_dir="unused").lr_decay, 0.999995)
