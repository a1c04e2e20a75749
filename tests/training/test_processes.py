"""The training command in real processes: a 2-process DDP job on the CPU (gloo), and survival of ``kill -9``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from pixelprior.pipelines import PixelPriorPipeline
from pixelprior.training import TrainConfig, Trainer, evaluate, list_checkpoints

HERE = os.path.dirname(os.path.abspath(__file__))
# A tiny PixelCNN on the binarized 8x8 digits (1,618 train / 179 test images): the processes start fast.
DIGITS = dict(
    model="pixelcnn_mnist",
    model_kwargs={"hidden_channels": 8, "num_layers": 2, "sample_size": 8},
    dataset="digits",
    binarize=True,
    learning_rate=1e-2,
    logger="none",
)


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(os.path.dirname(HERE))}
    env.pop("WORLD_SIZE", None)
    return env


def test_two_process_ddp_on_cpu_trains_shards_and_evaluates_exactly(tmp_path):
    # 2 processes x batch 6 take the same 12 images per step as 1 process x batch 12 (sampler.py), in two shards;
    # DDP averages the shards' gradients, so both runs must reach the same weights.
    config = dict(DIGITS, max_steps=4, batch_size=6, max_eval_samples=101, eval_batch_size=16, max_train_samples=120)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launcher += ["--main_process_port", "29533", "--num_machines", "1", "--mixed_precision", "no"]
    launcher += ["--dynamo_backend", "no"]
    job = json.dumps({**config, "output_dir": str(tmp_path / "ddp")})
    env = {**_env(), "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(
        [*launcher, os.path.join(HERE, "ddp_job.py"), job], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6 x 1 micro-batch(es) x 2 process(es) = 12 images" in done.stdout, done.stdout
    ranks = [load_file(tmp_path / "ddp" / f"rank{r}-of-2.safetensors") for r in range(2)]
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # identical weights on both ranks

    single = Trainer(TrainConfig(**{**config, "batch_size": 12}, output_dir=str(tmp_path / "single")))
    single.run()
    moved = False
    for name, value in single.prior.state_dict().items():
        torch.testing.assert_close(ranks[0][name], value, rtol=0, atol=1e-5, msg=name)
        moved |= not torch.equal(value, Trainer(TrainConfig(**config, output_dir="unused")).prior.state_dict()[name])
    assert moved  # the weights trained

    # Evaluation shared between the 2 processes (101 images: the last batches are padded) is exact.
    with open(tmp_path / "ddp" / "train_results.json") as f:
        result = json.load(f)
    prior = PixelPriorPipeline.from_pretrained(tmp_path / "ddp").prior
    assert evaluate(prior, single.test_set, batch_size=7) == pytest.approx(result["test_bits_per_dim"], abs=1e-6)


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "integrations", "accelerate")


def _launch(config_file: str, job: dict, *flags: str, env: dict | None = None) -> subprocess.Popen:
    """``accelerate launch --config_file CONFIG [flags] ddp_job.py JOB`` in the background."""
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.path.join(CONFIGS, config_file)]
    argv += [*flags, os.path.join(HERE, "ddp_job.py"), json.dumps(job)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or _env())


def _same_weights_on(out, world_size: int) -> None:
    ranks = [load_file(out / f"rank{r}-of-{world_size}.safetensors") for r in range(world_size)]
    for name in ranks[0]:
        assert all(torch.equal(ranks[0][name], other[name]) for other in ranks[1:]), name


def test_shipped_cpu_and_multi_node_configs_run(tmp_path):
    # The files of integrations/accelerate as a user launches them: cpu_multiprocess.yaml as it is, and
    # multi_node.yaml as 2 "nodes" of 1 process on this machine (node 0 at 127.0.0.1; the GPU settings overridden).
    job = dict(DIGITS, max_steps=2, batch_size=4, max_train_samples=32, max_eval_samples=16, num_sample_images=2)
    cpu_job = {**job, "output_dir": str(tmp_path / "cpu")}
    cpu = _launch("cpu_multiprocess.yaml", cpu_job, "--main_process_port", "29534")
    node_flags = ["--num_processes", "2", "--num_machines", "2", "--main_process_ip", "127.0.0.1"]
    node_flags += ["--main_process_port", "29535", "--mixed_precision", "no"]
    nodes = [
        _launch(
            "multi_node.yaml",
            {**job, "output_dir": str(tmp_path / "nodes")},
            *node_flags,
            "--machine_rank",
            str(rank),
            env={**_env(), "ACCELERATE_USE_CPU": "true"},
        )
        for rank in range(2)
    ]
    printed = []
    for proc in [cpu, *nodes]:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        printed.append(out)
    assert "4 x 1 micro-batch(es) x 2 process(es) = 8 images" in printed[0], printed[0]
    assert "4 x 1 micro-batch(es) x 2 process(es) = 8 images" in printed[1], printed[1]  # node 0 prints
    for folder in ("cpu", "nodes"):
        _same_weights_on(tmp_path / folder, 2)
        assert (tmp_path / folder / "model_index.json").is_file()  # the pipeline folder, written once


def test_kill_9_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    steps = 60
    config = dict(DIGITS, max_steps=steps, batch_size=16, checkpointing_steps=1, checkpoints_total_limit=3)
    config.update(max_eval_samples=20)
    argv = [sys.executable, "-m", "pixelprior", "train", "--output_dir", str(out)]
    for key, value in config.items():
        if value is True:
            argv.append(f"--{key}")
        else:
            argv += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        deadline = time.monotonic() + 240
        while not any(step >= 8 for step, _ in list_checkpoints(str(out))):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(step for step, _ in list_checkpoints(str(out)))
    assert 8 <= killed_at < steps

    resumed = Trainer(TrainConfig(**config, output_dir=str(out), resume_from_checkpoint="latest"))
    result = resumed.run()
    assert result.resumed_from is not None and result.steps == steps
    assert [s for s, _ in list_checkpoints(str(out))] == [steps - 2, steps - 1, steps]
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]

    straight = Trainer(TrainConfig(**config, output_dir=str(tmp_path / "straight")))
    straight.run()
    for name, value in straight.prior.state_dict().items():
        torch.testing.assert_close(resumed.prior.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)
    shutil.rmtree(out)
