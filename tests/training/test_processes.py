"""The training command in real processes: a 2-process DDP job on the CPU (gloo), and survival of ``kill -9``."""

from __future__ import annotations

import json
import os
import random
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


# ------------------------------------------------------------------------------------------- the kill -9 fuzz
# A run with EMA, sample grids, checkpoints every 2 steps and a total limit (so commits, prunes and the final save
# all happen), killed again and again: each attempt resumes from `latest` and is killed with SIGKILL before a chosen
# file-system write (a rename, a removal, a file opened for writing, a torch or safetensors save) or after a chosen
# time. CI runs the fixed plan below (aimed at checkpoint commits, prunes, the record, sample grids, the metrics log
# and the final publication); PIXELPRIOR_KILL_FUZZ=N adds N random kill points (by hand; PIXELPRIOR_KILL_FUZZ_SEED
# picks another sequence of them).
FUZZ = dict(DIGITS, max_steps=12, batch_size=8, checkpointing_steps=2, checkpoints_total_limit=2, max_train_samples=64)
FUZZ.update(max_eval_samples=16, use_ema=True, ema_decay=0.8, sample_steps=6, num_sample_images=2, logger="jsonl")
CI_PLAN = [  # (the write, a part of its path, which occurrence in the attempt) or ("time", seconds)
    ("rename", "/.tmp-checkpoint-", 2),  # publishing the attempt's second checkpoint
    ("open", "/trainer_state.json", 1),  # writing a checkpoint's record, its last file
    ("rename", "/checkpoint-", 1),  # a prune's first rename
    ("rmtree", "/.tmp-removed-", 1),  # a prune's removal
    ("open", "/samples/", 1),  # a sample grid
    ("time", 0.4),
    ("replace", "/.tmp-publish/", 2),  # between two files of the final publication
    ("rmtree", "/.tmp-publish", 1),  # the publication's last step
]


def _kill_before_write(write: str, part: str, occurrence: int, log: str) -> None:
    """In this (forked) process: SIGKILL itself before its ``occurrence``-th file-system write of kind ``write``
    (``rename``, ``open``, ``save_file``...; "" for any) whose path holds ``part``, noting which in ``log``."""
    import builtins

    import safetensors.torch

    count = [0]
    real_open = builtins.open

    def wrap(owner, name, writes=lambda *args, **kwargs: True):
        original = getattr(owner, name)

        def call(*args, **kwargs):
            where = str(args[1] if name.startswith("save") else args[0])
            if writes(*args, **kwargs) and write in ("", name) and part in where:
                count[0] += 1
                if count[0] == occurrence:
                    with real_open(log, "a") as f:
                        f.write(f"{name} {where}\n")
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(owner, name, call)

    def opens_for_writing(file, mode="r", *args, **kwargs):
        return any(c in mode for c in "wax+")

    for owner, name in ((os, "rename"), (os, "replace"), (shutil, "rmtree"), (torch, "save")):
        wrap(owner, name)
    wrap(safetensors.torch, "save_file")
    wrap(safetensors.torch, "save_model")
    wrap(builtins, "open", opens_for_writing)


def _fresh_tqdm_lock() -> None:
    """tqdm's write lock holds a multiprocessing semaphore that forked children share: one killed while holding it
    (a bar being drawn) would block every later child. A forked attempt starts with its own."""
    import multiprocessing
    import threading

    from tqdm.std import TqdmDefaultWriteLock, tqdm

    TqdmDefaultWriteLock.mp_lock, TqdmDefaultWriteLock.th_lock = multiprocessing.RLock(), threading.RLock()
    lock, classes = TqdmDefaultWriteLock(), [tqdm]
    while classes:  # every bar class that kept a lock of its own (LogProgress, tqdm.auto's)
        cls = classes.pop()
        if "_lock" in vars(cls):
            cls._lock = lock
        classes += cls.__subclasses__()
    tqdm.set_lock(lock)


def _attempt(out: str, plan: tuple | None, log: str, steps) -> int:
    """One attempt of the run in a forked child (resuming from ``latest``); returns its exit code. ``steps`` gets
    the last step it took and the step it resumed at."""
    import multiprocessing

    def child() -> None:
        _fresh_tqdm_lock()
        if plan is not None and plan[0] != "time":
            _kill_before_write(*plan, log)
        trainer = Trainer(TrainConfig(**FUZZ, output_dir=out, resume_from_checkpoint="latest"))
        original_setup = trainer.setup

        def setup() -> None:
            original_setup()
            steps[1] = trainer.step  # the step this attempt resumed at

        def train_step():
            outcome = original_step()
            steps[0] = trainer.step  # the last step taken
            return outcome

        trainer.setup, original_step, trainer.train_step = setup, trainer.train_step, train_step
        trainer.run()

    steps[0], steps[1] = -1, -1
    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    if plan is not None and plan[0] == "time":
        proc.join(plan[1])
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            with open(log, "a") as f:
                f.write(f"time {plan[1]:.2f} s\n")
    proc.join(120)
    assert proc.exitcode is not None, "an attempt hung"
    return proc.exitcode


def _random_plans(rng: random.Random):
    """Endless random kill points: before the k-th write of any kind, or after a time."""
    while True:
        yield ("", "", rng.randint(1, 45)) if rng.random() < 0.7 else ("time", rng.uniform(0.05, 0.8))


def _run_to_the_end(out: str, plans, log: str, every_plan: bool = False) -> tuple[int, list[int]]:
    """Attempt the run under each plan in turn (each resuming from `latest`) until an attempt finishes it (or, with
    ``every_plan``, through all of them: attempts after the end redo the final save); returns the number of kills
    and the steps each resume redid (each checked to be at most one checkpoint interval)."""
    import multiprocessing

    # (last step taken, step resumed at); no lock: a child killed while holding it would block the others
    steps = multiprocessing.get_context("fork").Array("i", 2, lock=False)
    last_taken, kills, redone = 0, 0, []
    for plan in plans:
        code = _attempt(out, plan, log, steps)
        assert code in (0, -signal.SIGKILL), f"attempt {plan} failed with exit code {code}"
        if steps[1] >= 0:  # it resumed: at most one checkpoint interval of the steps already taken is redone
            redone.append(max(0, last_taken - steps[1]))
            assert last_taken - steps[1] <= FUZZ["checkpointing_steps"], (plan, last_taken, steps[1])
        last_taken = max(last_taken, steps[0])
        if code == 0 and (not every_plan or plan is None):
            return kills, redone
        kills += code != 0
    raise AssertionError("the run never finished")


def _check_uninterrupted_weights(out: str, straight) -> None:
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]
    assert [s for s, _ in list_checkpoints(out)] == [10, 12]
    got = PixelPriorPipeline.from_pretrained(out).prior.state_dict()  # the EMA weights
    for name, value in PixelPriorPipeline.from_pretrained(straight).prior.state_dict().items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)
    raw = load_file(f"{out}/checkpoint-12/model.safetensors")
    straight_raw = load_file(straight / "checkpoint-12" / "model.safetensors")
    assert all(torch.equal(raw[name], straight_raw[name]) for name in straight_raw)


def test_kill_9_at_random_moments_always_resumes_to_the_uninterrupted_weights(tmp_path):
    straight = tmp_path / "straight"
    Trainer(TrainConfig(**FUZZ, output_dir=str(straight))).run()
    log = str(tmp_path / "kills.log")
    kills, redone = _run_to_the_end(str(tmp_path / "run"), [*CI_PLAN, None], log, every_plan=True)
    _check_uninterrupted_weights(str(tmp_path / "run"), straight)
    with open(log) as f:
        killed_at = f.read().splitlines()
    assert kills == len(killed_at) and kills >= len(CI_PLAN) - 1, killed_at  # (a time may come after the end)
    # By hand: PIXELPRIOR_KILL_FUZZ=N more runs, each killed at random points until one attempt finishes it.
    rng = random.Random(int(os.environ.get("PIXELPRIOR_KILL_FUZZ_SEED", "0")))
    for chain in range(int(os.environ.get("PIXELPRIOR_KILL_FUZZ", "0"))):
        more, more_redone = _run_to_the_end(str(tmp_path / f"run{chain}"), _random_plans(rng), log)
        _check_uninterrupted_weights(str(tmp_path / f"run{chain}"), straight)
        shutil.rmtree(tmp_path / f"run{chain}")
        kills, redone = kills + more, redone + more_redone
    with open(log) as f:
        killed_at = f.read().splitlines()
    print(f"{kills} kills, every run ended with the uninterrupted weights; steps redone by each resume: {redone}")
    print("killed before:", *killed_at, sep="\n  ")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) for private tmpfs mounts")
def test_a_full_disk_and_a_read_only_file_system_are_one_line_naming_the_path(tmp_path):
    # Real file systems, no root needed: tmpfs mounts in a user + mount namespace of their own.
    full, readonly = tmp_path / "full", tmp_path / "readonly"
    full.mkdir(), readonly.mkdir()
    torch.manual_seed(0)
    pipeline = tmp_path / "pipe"
    from pixelprior import create_prior

    PixelPriorPipeline(create_prior("pixelcnn_mnist", hidden_channels=4, num_layers=1, sample_size=8)).save_pretrained(
        pipeline
    )
    script = (
        f"mount -t tmpfs -o size=160k tmpfs {full} && mount -t tmpfs -o ro,size=64k tmpfs {readonly} && "
        f"{sys.executable} {os.path.join(HERE, 'fs_job.py')} {full} {readonly} {pipeline}"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=_env(), timeout=300
    )
    if done.returncode != 0 and "mount" in done.stderr and "fs_job" not in done.stderr:
        pytest.skip(f"no private mounts here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    code, err = seen["full"]
    (err,) = [line for line in err.splitlines() if not line.startswith("train:")]  # one line, the progress aside
    assert code == 1 and err.startswith("pixelprior train: error: Could not write checkpoint file"), err
    assert "No space left on device (the disk is full)" in err and "the earlier checkpoints are intact" in err, err
    assert str(full) in err and 2 <= len(seen["checkpoints"]) < 40 and all(seen["intact"]), seen
    assert seen["leftovers"] == []
    for command in ("train_ro", "sample_ro", "encode_ro"):
        code, err = seen[command]
        assert code == 2 and err.count("\n") == 1 and "Read-only file system" in err and str(readonly) in err, err
