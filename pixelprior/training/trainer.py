"""The Accelerate training loop behind ``pixelprior train``.

One code path for one CPU, several CPU processes, one or many GPUs and several nodes: ``accelerate launch``
decides, this file does not. The model is built by registry name (``create_prior``) or from a ``config.json``,
trained with Adam on the loss every prior defines (mean bits per dimension) under the learning-rate schedule of
``schedules.py``, evaluated exactly on the whole test split every ``eval_steps`` and on both splits at the end,
previewed through the pipeline every ``sample_steps``, checkpointed atomically every ``checkpointing_steps``, and
saved as a :class:`~pixelprior.pipelines.PixelPriorPipeline` (or, for ``codes:`` data, a ``VQPriorPipeline``)
folder, with the measured numbers and the configuration in ``train_results.json`` beside it.

Exact resumption: everything a step depends on is in the checkpoint or a pure function of the step — the weights,
Adam's moments, the EMA, the RNG states (dropout) are saved; the learning rate (``schedules.py``) and the data
position (``sampler.py``: micro-batch ``step * gradient_accumulation_steps`` of a seeded order) follow from the
step. So ``N`` steps straight and ``k`` steps + resume + ``N - k`` steps give the same weights.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, TorchDynamoPlugin, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..data import ColorPalette, GridDataset, load_dataset, parse_dataset
from ..models import AutoregressivePrior, create_prior
from .checkpoint import (
    begin_checkpoint,
    checkpoint_dir,
    checkpoint_step,
    commit_checkpoint,
    latest_checkpoint,
    prune_checkpoints,
    remove_leftovers,
    resolve_resume,
    tmp_checkpoint_dir,
)
from .config import TrainConfig
from .ema import EMA
from .gradient_checkpointing import enable_gradient_checkpointing
from .init_from import load_init_pipeline, model_config_file, prior_from_pipeline
from .loggers import MetricsLogger, check_logger_available
from .metrics import evaluate, nats_per_image
from .options import options_as_json
from .palette import PALETTE_FILE, checkpoint_palette, encode_dataset, fit_palette, is_palette_size, resumed_palette
from .sampler import ShardedBatchSampler
from .schedules import lr_factor

RESULTS_FILE = "train_results.json"
TRAINER_STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"


class NonFiniteLossError(RuntimeError):
    """The training loss was NaN or infinite at a step (and ``--skip_nonfinite`` was not given)."""


@dataclass
class TrainResult:
    """What a run measured: exact bits/dim over each split, nats per image for binary data, and its counters."""

    steps: int
    train_bits_per_dim: float
    test_bits_per_dim: float
    train_nll_nats: float | None
    test_nll_nats: float | None
    seconds: float
    output_dir: str
    nonfinite_steps: int = 0
    resumed_from: str | None = None
    images_per_second: float | None = None


class PriorObjective(nn.Module):
    """The prior's loss (mean bits/dim) as a module's ``forward``.

    DistributedDataParallel (and FSDP) synchronize what runs through the wrapped module's ``forward``; a prior's
    ``forward`` returns distribution parameters, so the loss is wrapped as the forward instead. ``per_image=True``
    gives each image's bits/dim (evaluation through the wrapped model).

    Shapes:
        x: ``(B, C, H, W)`` long, class_labels: ``(B,)`` or None -> ``()``, or ``(B,)`` with ``per_image``
    """

    def __init__(self, prior: AutoregressivePrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, per_image: bool = False
    ) -> torch.Tensor:
        if per_image:
            return self.prior.bits_per_dim(x, class_labels=class_labels)
        return self.prior.loss(x, class_labels=class_labels)


def make_optimizer(parameters: Any, learning_rate: float) -> torch.optim.Adam:
    """Adam as the trainer (and ``benchmarks/training.py``) runs it: the fused kernel, one launch per step on a GPU
    for all the parameters instead of several per parameter (CPU included; the same update up to rounding)."""
    return torch.optim.Adam(parameters, lr=learning_rate, fused=True)


def _read_model_config(path: str) -> dict[str, Any]:
    file = model_config_file(path)  # a file, a prior's folder or a run folder
    with open(file) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"Expected a JSON object in {file!r}, got invalid JSON ({error}).") from None
    if not isinstance(config, dict) or "_class_name" not in config:
        raise ValueError(f"Expected a JSON object with a '_class_name' in {file!r}, got {str(config)[:80]!r}.")
    return config


def build_prior(config: TrainConfig, init_pipeline: Any | None = None) -> AutoregressivePrior:
    """The untrained model: ``create_prior(config.model, **config.model_kwargs)``, or the class and arguments of
    ``config.model_config`` (a saved ``config.json``) overridden by ``config.model_kwargs``; with
    ``config.init_from``, the trained prior of that pipeline (``init_pipeline``, once loaded; see ``init_from.py``).

    Unknown argument names are a ``ValueError`` (the registry's check: ``models.registry.check_arguments``).
    """
    if config.init_from is not None:
        return prior_from_pipeline(config, init_pipeline)
    if config.model is not None:
        return create_prior(config.model, **config.model_kwargs)
    from ..models.registry import check_arguments, prior_class

    saved = _read_model_config(config.model_config)
    cls = prior_class(saved["_class_name"])
    kwargs = {k: v for k, v in saved.items() if not k.startswith("_")}
    kwargs.update(config.model_kwargs)
    check_arguments(cls, kwargs)
    return cls(**kwargs)


def check_data_matches_model(prior: AutoregressivePrior, dataset: GridDataset, config: TrainConfig) -> None:
    """Raise a ValueError saying what to pass when the data and the model disagree on their grids or values."""
    model = config.model_name
    model_grid = (prior.in_channels, *prior.grid_size)
    data_grid = (dataset.in_channels, *dataset.sample_size)
    if model_grid != data_grid:
        raise ValueError(
            f"Expected model {model!r} to model {config.dataset!r} grids of shape (C, H, W) = {data_grid}, "
            f'got a model of {model_grid}. Pass --model_kwargs \'{{"in_channels": {data_grid[0]}, '
            f'"sample_size": [{data_grid[1]}, {data_grid[2]}]}}\'.'
        )
    if prior.num_values != dataset.num_values:
        if config.binarize:
            fix = "pass --model_kwargs '{\"num_values\": 2}' or drop --binarize"
        elif prior.num_values == 2:
            fix = f"pass --binarize or --model_kwargs '{{\"num_values\": {dataset.num_values}}}'"
        else:
            fix = f"pass --model_kwargs '{{\"num_values\": {dataset.num_values}}}'"
        what = "binarized" if config.binarize else "unbinarized"
        raise ValueError(
            f"Expected a model with num_values={dataset.num_values} for {what} {config.dataset!r}, got model "
            f"{model!r} with num_values={prior.num_values}: {fix}."
        )
    if prior.num_classes is not None:
        if dataset.labels is None:
            raise ValueError(
                f"Expected labelled data for class-conditional model {model!r}, but {config.dataset!r} has "
                "no labels. Pass --model_kwargs '{\"num_classes\": null}'."
            )
        if dataset.num_classes is not None and dataset.num_classes > prior.num_classes:
            raise ValueError(
                f"Expected a model with num_classes >= {dataset.num_classes} for {config.dataset!r}, got "
                f"num_classes={prior.num_classes}. Pass --model_kwargs '{{\"num_classes\": {dataset.num_classes}}}'."
            )


def load_splits(config: TrainConfig) -> tuple[GridDataset, GridDataset]:
    """The train and test splits of ``config.dataset`` (with ``--resolution``, ``--num_bits``, ``--data_dir``)."""
    kwargs = dict(
        binarize=config.binarize, resolution=config.resolution, num_bits=config.num_bits, data_dir=config.data_dir
    )
    return load_dataset(config.dataset, "train", **kwargs), load_dataset(config.dataset, "test", **kwargs)


def _first(dataset: Dataset, n: int | None) -> Dataset:
    """The first ``n`` items of ``dataset`` (all of them when ``n`` is None or larger)."""
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def _launched_on_cpu_only() -> bool:
    """Several processes were launched (torchrun, ``accelerate launch``) on a machine with no accelerator.

    ``accelerate launch`` starts its workers through torchrun for a multi-process config, but Accelerate only
    joins them in a CPU (gloo) process group when told ``cpu=True``; without it each worker would train alone.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return world_size > 1 and not has_accelerator


@dataclass
class StepOutcome:
    """One optimizer step as the loop saw it: the step just taken (1-based), the learning rate it used, and the
    loss of every micro-batch on every process (``finite`` when all were; a step that is not is skipped)."""

    step: int
    learning_rate: float
    losses: list[float]
    loss: float
    finite: bool


@dataclass
class TrainerState:
    """What ``trainer_state.json`` holds besides the Accelerate state: the step (the data position and the learning
    rate follow from it) and the counters."""

    step: int
    nonfinite_steps: int = 0

    def save(self, folder: str) -> None:
        with open(os.path.join(folder, TRAINER_STATE_FILE), "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, folder: str) -> TrainerState:
        with open(os.path.join(folder, TRAINER_STATE_FILE)) as f:
            state = json.load(f)
        return cls(step=state["step"], nonfinite_steps=int(state["nonfinite_steps"]))


def _make_accelerator(config: TrainConfig) -> Accelerator:
    """The run's Accelerator, with the run's own settings; refuses a precision it would silently ignore."""
    # Accelerate keeps one state per process and an Accelerator made after another keeps the first's settings (a
    # second run in a notebook would silently keep its --compile and fail on a new --mixed_precision): the run's own
    # settings replace them. The process group (PartialState) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        cpu=_launched_on_cpu_only(),
        mixed_precision=config.mixed_precision,
        log_with="tensorboard" if config.logger == "tensorboard" else None,
        project_dir=os.path.join(config.output_dir, "logs"),
        dynamo_plugin=TorchDynamoPlugin(backend="inductor", mode=config.compile_mode) if config.compile else None,
    )
    if config.mixed_precision != "no" and not accelerator.native_amp:
        # Accelerate would train in float32 without a word (it does for fp16 on a CPU).
        raise ValueError(
            f"Expected --mixed_precision bf16 or no on {accelerator.device.type}, got {config.mixed_precision!r}: "
            f"Accelerate has no {config.mixed_precision} autocast there and would silently train in float32."
        )
    return accelerator


class Trainer:
    """One training run of ``config``: ``Trainer(config).run()`` is :func:`train`.

    The run reads as nanoGPT's loop: :meth:`setup`, then :meth:`train_step` and :meth:`after_step` (logging,
    evaluation, samples, checkpoints) until ``max_steps``, then :meth:`finish` (the final evaluation and the saved
    pipeline). Each piece is a small method, so a feature is a new method called from one of them.

    After :meth:`run`, ``trainer.prior`` holds the trained (raw, not averaged) weights of this process and
    ``trainer.ema`` the average, if any.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        check_logger_available(config.logger)
        self.accelerator = _make_accelerator(config)
        self.fsdp = self.accelerator.distributed_type == DistributedType.FSDP
        if self.fsdp and config.use_ema:
            raise ValueError("Expected --no_use_ema with FSDP (the EMA keeps full weights), got the EMA on.")
        set_seed(config.seed)
        train_set, test_set = load_splits(config)
        self.init_pipeline = load_init_pipeline(config) if config.init_from is not None else None
        self.palette = self.make_palette(train_set)  # before the model: the data it sees are the palette's ids
        if self.palette is not None:
            train_set, test_set = encode_dataset(self.palette, train_set), encode_dataset(self.palette, test_set)
        self.prior = build_prior(config, self.init_pipeline)
        check_data_matches_model(self.prior, train_set, config)
        self.train_set = _first(train_set, config.max_train_samples)
        self.test_set = _first(test_set, config.max_eval_samples)
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(self.prior)
        # The training state. setup() wraps the objective and the optimizer for the processes and resumes it.
        self.objective: nn.Module = PriorObjective(self.prior)
        self.optimizer = make_optimizer(self.objective.parameters(), config.learning_rate)
        factor = lr_factor(
            config.lr_schedule, decay=config.lr_decay, warmup_steps=config.lr_warmup_steps, max_steps=config.max_steps
        )
        # Not prepared: Accelerate would step a prepared scheduler once per process. Stepped once per step here.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.ema: EMA | None = None  # made in setup(), once the weights are on their device
        self.step = 0
        self.nonfinite_steps = 0
        self.resumed_from: str | None = None
        self.logger: MetricsLogger | None = None
        self.batches: Iterator[dict[str, torch.Tensor]] | None = None
        self.bar: tqdm | None = None
        self.smoothed_loss: float | None = None  # the progress bar's running mean of the loss
        self.start_time, self.start_step = 0.0, 0
        self._vqvae = None
        self.hub_repo: str | None = None  # the full id of the --push_to_hub repository, made in setup()
        self.last_sample_step: int | None = None  # the step of the last sample grid written

    @property
    def images_per_step(self) -> int:
        """Images per optimizer step, over every micro-batch and process."""
        return self.config.batch_size * self.config.gradient_accumulation_steps * self.accelerator.num_processes

    # ---------------------------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        """Train, evaluate, save; every process returns the same :class:`TrainResult`."""
        self.setup()
        try:
            while self.step < self.config.max_steps:
                self.after_step(self.train_step())
        finally:
            self.bar.close()
        return self.finish()

    def setup(self) -> None:
        """Everything before step 1: the processes, the output folder, the resumed state, the logs, the data."""
        acc = self.accelerator
        if self.config.push_to_hub and acc.is_main_process:
            from .hub import prepare_hub_repo

            self.hub_repo = prepare_hub_repo(self.config)  # a missing token or a refused repository: before step 1
        self.objective, self.optimizer = acc.prepare(self.objective, self.optimizer)
        acc.register_for_checkpointing(self.scheduler)
        if self.config.use_ema:
            self.ema = self.new_ema()
        if acc.is_main_process:
            os.makedirs(self.config.output_dir, exist_ok=True)
            remove_leftovers(self.config.output_dir)
        acc.wait_for_everyone()
        self.resume()
        self.logger = MetricsLogger(
            self.config.logger,
            self.config.output_dir,
            acc,
            hparams=options_as_json(self.config),
            resume_step=self.step if self.resumed_from else None,
        )
        self.batches = self.training_batches()
        self.print_header()
        self.objective.train()
        self.start_time, self.start_step = time.perf_counter(), self.step
        self.bar = tqdm(
            total=self.config.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not acc.is_local_main_process,
        )

    def make_palette(self, train_set: GridDataset) -> ColorPalette | None:
        """The run's colour palette (``palette.py``): the ``--init_from`` pipeline's, a resumed checkpoint's, or
        ``--palette``'s (fitted once, on the main process, and shared), or None."""
        config = self.config
        if config.palette is not None and self.init_pipeline is not None:
            has = "its" if getattr(self.init_pipeline, "palette", None) is not None else "no"
            raise ValueError(
                f"Expected no --palette with --init_from {config.init_from!r} (the run takes {has} palette from the "
                f"pipeline), got --palette {config.palette!r}."
            )
        if config.palette is not None and parse_dataset(config.dataset).kind == "codes":
            raise ValueError(
                f"Expected no --palette for VQ codes {config.dataset!r}, got --palette {config.palette!r}."
            )
        if self.init_pipeline is not None:
            return getattr(self.init_pipeline, "palette", None)
        checkpoint = resolve_resume(config.output_dir, config.resume_from_checkpoint)
        if checkpoint is not None:
            return resumed_palette(config.palette, checkpoint, checkpoint_palette(checkpoint))
        if config.palette is None:
            return None
        acc, fitted = self.accelerator, is_palette_size(config.palette)
        palette = None
        if acc.is_main_process or not fitted:
            palette = fit_palette(config.palette, train_set, config.max_train_samples, config.seed)
        if fitted and acc.num_processes > 1:  # one fit, the same centres everywhere (float rounding varies by CPU)
            from accelerate.utils import broadcast

            centers = palette.centers if palette is not None else torch.zeros(int(config.palette), 3)
            palette = ColorPalette(broadcast(centers.to(acc.device)).cpu(), train_set.num_values)
        return palette

    def new_ema(self) -> EMA:
        """The average of the weights, initialised from them (on their device); warns when it would average over
        more steps than the run has."""
        config = self.config
        ema = EMA(
            self.prior,
            config.ema_decay,
            warmup=config.ema_warmup,
            inv_gamma=config.ema_inv_gamma,
            power=config.ema_power,
        )
        warning = ema.horizon_warning(config.max_steps)
        if warning is not None and self.accelerator.is_main_process:
            warnings.warn(warning, UserWarning, stacklevel=2)
        return ema

    def resume(self) -> None:
        """Restore the checkpoint named by ``resume_from_checkpoint``, if any (``self.step`` is then its step)."""
        out, wanted = self.config.output_dir, self.config.resume_from_checkpoint
        self.resumed_from = resolve_resume(out, wanted)
        if wanted == "latest" and self.resumed_from is None:
            self._print(f"No checkpoint in {out} to resume from: starting a new run.")
        if self.resumed_from is not None:
            self.step = self.load_checkpoint(self.resumed_from)
            self._print(f"Resumed from {self.resumed_from} at step {self.step}.")

    def training_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """This process's batches, from the current step on (the data order is a function of the seed and step)."""
        acc, config = self.accelerator, self.config
        sampler = ShardedBatchSampler(
            len(self.train_set),
            config.batch_size,
            acc.num_processes,
            acc.process_index,
            seed=config.seed,
            start=self.step * config.gradient_accumulation_steps,
        )
        # Its own generator: iterating a DataLoader draws a seed, which must not shift the global RNG (dropout).
        loader = DataLoader(
            self.train_set,
            batch_sampler=sampler,
            pin_memory=acc.device.type == "cuda",
            generator=torch.Generator().manual_seed(config.seed),
        )
        return iter(loader)

    def print_header(self) -> None:
        config, acc = self.config, self.accelerator
        if acc.is_main_process:
            num_params = sum(p.numel() for p in self.prior.parameters())
            self._print(
                f"Training {config.model_name} ({type(self.prior).__name__}, {num_params:,} parameters) on "
                f"{config.dataset}{' (binarized)' if config.binarize else ''}: {len(self.train_set)} train / "
                f"{len(self.test_set)} test images, {config.max_steps} steps of {config.batch_size} x "
                f"{config.gradient_accumulation_steps} micro-batch(es) x {acc.num_processes} process(es) = "
                f"{self.images_per_step} images."
            )

    def train_step(self) -> StepOutcome:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; a non-finite one is not taken."""
        acc, accumulation = self.accelerator, self.config.gradient_accumulation_steps
        losses = [self.micro_step(last=micro == accumulation - 1) for micro in range(accumulation)]
        step_losses = acc.gather(torch.stack(losses)[None])  # (processes, accumulation): every rank agrees
        finite = bool(torch.isfinite(step_losses).all())
        if finite:
            if self.config.max_grad_norm is not None:
                acc.clip_grad_norm_(self.objective.parameters(), self.config.max_grad_norm)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.prior, self.step + 1)  # the step just taken sets the warm-up's decay
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.step += 1
        loss = step_losses.mean().item() if finite else math.nan
        outcome = StepOutcome(self.step, lr, step_losses.flatten().tolist(), loss, finite)
        if not finite:
            self.on_nonfinite(outcome)
        return outcome

    def micro_step(self, last: bool) -> torch.Tensor:
        """Forward and backward one micro-batch (gradients synchronized on the ``last`` one); returns its loss."""
        acc = self.accelerator
        batch = next(self.batches)
        x = batch["x"].to(acc.device, non_blocking=True)
        labels = batch["class_labels"].to(acc.device) if self.prior.num_classes is not None else None
        if self.config.compile:
            # A new step for CUDA graphs (reduce-overhead, max-autotune); a no-op otherwise.
            torch.compiler.cudagraph_mark_step_begin()
        with nullcontext() if last else acc.no_sync(self.objective):
            loss = self.objective(x, labels)  # () bits/dim
            acc.backward(loss / self.config.gradient_accumulation_steps)
        # A copy: a CUDA graph's output is overwritten by the next micro-batch's replay.
        return loss.detach().to(torch.float32, copy=True)

    def on_nonfinite(self, outcome: StepOutcome) -> None:
        """Count a skipped step; stop the run unless ``skip_nonfinite``."""
        self.nonfinite_steps += 1
        if not self.config.skip_nonfinite:
            last = latest_checkpoint(self.config.output_dir)
            raise NonFiniteLossError(
                f"Non-finite training loss at step {outcome.step} (losses {outcome.losses}); stopped without taking "
                f"that step. The last good checkpoint is {last or 'none (no --checkpointing_steps)'}: resume it with "
                "--resume_from_checkpoint latest and a lower --learning_rate or a --max_grad_norm, or pass "
                "--skip_nonfinite to skip such steps."
            )
        self._print(f"Skipped step {outcome.step}: non-finite loss {outcome.losses} ({self.nonfinite_steps} so far).")

    def after_step(self, outcome: StepOutcome) -> None:
        """The periodic work after a step: progress, logs, evaluation, samples, checkpoints."""
        config = self.config
        self.show_progress(outcome)
        if self.step % config.log_steps == 0 or not outcome.finite:
            self.log_step(outcome)
        if self._due(config.eval_steps) and self.step < config.max_steps:
            self.evaluate_test()
        if self._due(config.sample_steps):
            self.save_samples(self.step)
        if self._due(config.checkpointing_steps):
            self.save_checkpoint(self.step)

    def _due(self, every: int | None) -> bool:
        return bool(every) and self.step % every == 0

    def images_per_second(self) -> float:
        return (self.step - self.start_step) * self.images_per_step / (time.perf_counter() - self.start_time)

    def show_progress(self, outcome: StepOutcome) -> None:
        if outcome.finite:
            previous = self.smoothed_loss
            self.smoothed_loss = outcome.loss if previous is None else 0.98 * previous + 0.02 * outcome.loss
        smoothed = self.smoothed_loss
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{outcome.loss:.4f}",
            bpd=f"{smoothed:.4f}" if smoothed else "nan",
            img_s=f"{self.images_per_second():.0f}",
        )

    def log_step(self, outcome: StepOutcome) -> None:
        values = {
            "train/loss": outcome.loss,
            "train/lr": outcome.learning_rate,
            "train/images_per_s": self.images_per_second(),
            "train/nonfinite_steps": self.nonfinite_steps,
        }
        self.logger.log(values, self.step)

    def evaluate_test(self) -> float:
        """Evaluate the test split now, log it and show it under the progress bar."""
        test_bpd = self.evaluate(self.test_set)
        self.logger.log({"test/bits_per_dim": test_bpd}, self.step)
        if self.accelerator.is_local_main_process:
            self.bar.write(f"step {self.step}: test bits/dim {test_bpd:.4f}")
        return test_bpd

    def finish(self) -> TrainResult:
        """After the last step: exact bits/dim over both splits, the pipeline and ``train_results.json``."""
        seconds = time.perf_counter() - self.start_time
        train_bpd = self.evaluate(self.train_set)
        test_bpd = self.evaluate(self.test_set)
        self.logger.log({"train/bits_per_dim": train_bpd, "test/bits_per_dim": test_bpd}, self.step)
        result = self.make_result(train_bpd, test_bpd, seconds)
        self.save_pipeline(result)
        self.publish_run(result)
        self.accelerator.wait_for_everyone()
        self.logger.close()
        return result

    def publish_run(self, result: TrainResult) -> None:
        """After the pipeline: the last sample grid, ``logs/curve.png``, the model card and, with ``--push_to_hub``,
        the upload (``hub.py``)."""
        from .hub import RunFiles, push_run, training_card, write_card

        config, acc, out = self.config, self.accelerator, self.config.output_dir
        grid = self.sample_grid_path(self.step) if config.num_sample_images > 0 else None
        if grid is not None and self.last_sample_step != self.step:
            self.save_samples(self.step)
        prior = self._full_prior()  # collective under FSDP
        if not acc.is_main_process:
            return
        curve = self.write_curve()
        pipeline = self._pipeline(prior)
        files = RunFiles(
            components=tuple(name for name, value in pipeline.components.items() if value is not None),
            sample_grid=os.path.relpath(grid, out) if grid is not None else None,
            curve=os.path.relpath(curve, out) if curve is not None else None,
        )
        card = training_card(config, result, self.images_per_step, (len(self.train_set), len(self.test_set)), files)
        write_card(out, pipeline, self.hub_repo or out, card)
        if self.hub_repo is not None:
            url = push_run(config, self.hub_repo, files, result.steps)
            self._print(f"Pushed {out} to https://huggingface.co/{self.hub_repo} ({url}).")

    def write_curve(self) -> str | None:
        """Draw ``logs/curve.png`` from the logged metrics (main process); None when nothing was logged."""
        from .curve import LearningCurve

        curve = LearningCurve.from_records(self.logger.history)
        if curve.is_empty():
            return None
        weights = "EMA weights" if self.ema is not None else "weights"
        title = f"{self.config.model_name} on {self.config.dataset}: bits/dim"
        path = os.path.join(self.config.output_dir, "logs", "curve.png")
        return curve.plot(path, title, evaluated=weights)

    def make_result(self, train_bpd: float, test_bpd: float, seconds: float) -> TrainResult:
        prior = self.prior
        num_dims = prior.in_channels * prior.grid_size[0] * prior.grid_size[1]
        binary = prior.num_values == 2
        trained = self.step - self.start_step
        return TrainResult(
            steps=self.step,
            train_bits_per_dim=train_bpd,
            test_bits_per_dim=test_bpd,
            train_nll_nats=nats_per_image(train_bpd, num_dims) if binary else None,
            test_nll_nats=nats_per_image(test_bpd, num_dims) if binary else None,
            seconds=seconds,
            output_dir=self.config.output_dir,
            nonfinite_steps=self.nonfinite_steps,
            resumed_from=self.resumed_from,
            images_per_second=trained * self.images_per_step / seconds if trained > 0 else None,
        )

    def save_pipeline(self, result: TrainResult) -> None:
        """Save the pipeline (the EMA weights with ``--use_ema``) and ``train_results.json`` (main process)."""
        out = self.config.output_dir
        with self._averaged_weights():
            full = self._full_prior()
            if full is not None:
                pipeline = self._pipeline(full)
                pipeline.save_pretrained(out)
                with open(os.path.join(out, RESULTS_FILE), "w") as f:
                    json.dump({**asdict(result), "config": options_as_json(self.config)}, f, indent=2)
                self._print(format_result(result))
                weights = "EMA weights" if self.ema is not None else "weights"
                self._print(f"Saved the pipeline ({weights}) to {out} ({type(pipeline).__name__}.from_pretrained).")

    # ------------------------------------------------------------------------------------------------- helpers
    def _print(self, *args: Any) -> None:
        self.accelerator.print(*args)

    @contextmanager
    def _averaged_weights(self):
        """Evaluation, samples and saving see the EMA weights (with ``--use_ema``), training the raw ones."""
        with self.ema.applied_to(self.prior) if self.ema is not None else nullcontext():
            yield

    def _full_prior(self) -> AutoregressivePrior | None:
        """A prior holding the full current weights on the main process (None elsewhere); call on every process.

        Under FSDP the wrapped model holds shards only: the full state dict is gathered into a fresh copy.
        """
        if not self.fsdp:
            return self.prior if self.accelerator.is_main_process else None
        state = self.accelerator.get_state_dict(self.objective)  # collective
        if not self.accelerator.is_main_process:
            return None
        prior = build_prior(self.config)
        prior.load_state_dict({k.removeprefix("prior."): v for k, v in state.items()})
        return prior

    def _pipeline(self, prior: AutoregressivePrior):
        from ..pipelines import PixelPriorPipeline

        kind, codes_file = parse_dataset(self.config.dataset)
        if kind != "codes":
            return PixelPriorPipeline(prior=prior, palette=self.palette)
        from diffusers import VQModel

        from ..data.codes import codes_metadata
        from ..pipelines import VQPriorPipeline
        from ..vqmodel import vqvae_folder

        if self._vqvae is None:
            path = codes_metadata(os.path.expanduser(codes_file))["vqvae_path"]
            self._vqvae = VQModel.from_pretrained(vqvae_folder(path)).to(prior.device)
        return VQPriorPipeline(prior=prior, vqvae=self._vqvae)

    def evaluate(self, dataset: Dataset) -> float:
        """Exact mean bits/dim over ``dataset`` with the evaluation weights, shared between the processes."""
        bits_per_dim = None
        if self.fsdp:  # through the wrapped model, which gathers its shards
            wrapped = self.objective

            def bits_per_dim(x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
                return wrapped(x, class_labels, per_image=True).float()

            self.objective.eval()
        try:
            with self._averaged_weights():
                return evaluate(
                    self.prior, dataset, self.config.eval_batch_size, self.accelerator, bits_per_dim=bits_per_dim
                )
        finally:
            self.objective.train()

    def sample_grid_path(self, step: int) -> str:
        return os.path.join(self.config.output_dir, "samples", f"step-{step}.png")

    def save_samples(self, step: int) -> str | None:
        """Write a grid of ``num_sample_images`` samples to ``output_dir/samples/step-STEP.png`` (main process)."""
        from ..pipelines import make_image_grid

        path = self.sample_grid_path(step)
        with self._averaged_weights():
            prior = self._full_prior()
            if prior is not None:  # the sampler runs the prior in eval mode and restores its mode
                n = self.config.num_sample_images
                labels = None
                if prior.num_classes is not None:
                    labels = torch.arange(n) % prior.num_classes
                images = self._pipeline(prior)(
                    batch_size=n,
                    class_labels=labels,
                    generator=torch.Generator().manual_seed(self.config.seed),
                    progress=False,
                ).images
                os.makedirs(os.path.dirname(path), exist_ok=True)
                make_image_grid(images).save(path)
        self.accelerator.wait_for_everyone()
        self.last_sample_step = step  # the card reuses the grid of the last step
        return path if self.accelerator.is_main_process else None

    def save_checkpoint(self, step: int) -> str:
        """Write ``output_dir/checkpoint-STEP`` atomically (every process takes part) and apply the total limit."""
        acc, out = self.accelerator, self.config.output_dir
        tmp = tmp_checkpoint_dir(out, step)
        if acc.is_main_process:
            begin_checkpoint(out, step)
        acc.wait_for_everyone()
        acc.save_state(tmp, safe_serialization=True)  # model.safetensors, optimizer, scheduler, RNG states
        if acc.is_main_process:
            if self.ema is not None:
                from safetensors.torch import save_file

                save_file(self.ema.state_dict(), os.path.join(tmp, EMA_FILE), metadata={"decay": str(self.ema.decay)})
            if self.palette is not None:  # part of the run: a resume takes it instead of fitting again
                self.palette.save(os.path.join(tmp, PALETTE_FILE))
            TrainerState(step=step, nonfinite_steps=self.nonfinite_steps).save(tmp)
        acc.wait_for_everyone()
        final = checkpoint_dir(out, step)
        if acc.is_main_process:
            final = commit_checkpoint(tmp, out, step)
            prune_checkpoints(out, self.config.checkpoints_total_limit, log=self._print)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: str) -> int:
        """Restore the state saved in ``path``; returns its step."""
        self.accelerator.load_state(path)
        state = TrainerState.load(path)
        if state.step != checkpoint_step(path):
            raise ValueError(f"Expected step {checkpoint_step(path)} in {path}/{TRAINER_STATE_FILE}, got {state}.")
        ema_file = os.path.join(path, EMA_FILE)
        if self.ema is not None:
            if not os.path.isfile(ema_file):
                raise ValueError(f"Expected {ema_file} to resume with --use_ema, got a checkpoint without EMA.")
            from safetensors.torch import load_file

            self.ema.load_state_dict(load_file(ema_file, device=str(self.prior.device)))
        self.nonfinite_steps = state.nonfinite_steps
        return state.step


def train(config: TrainConfig) -> TrainResult:
    """Train the model of ``config`` on ``config.dataset`` and save the pipeline in ``config.output_dir``.

    Every process returns the same :class:`TrainResult`; only the main process prints and writes files.

    Raises:
        NonFiniteLossError: a step's loss was NaN or infinite and ``config.skip_nonfinite`` is False.
        ValueError: bad configuration, data that do not fit the model, or a missing checkpoint.
    """
    return Trainer(config).run()


def format_result(result: TrainResult) -> str:
    """The summary lines ``pixelprior train`` prints at the end."""
    lines = [
        f"Trained {result.steps} steps in {result.seconds:.1f} s.",
        f"train bits/dim: {result.train_bits_per_dim:.4f}",
        f"test bits/dim: {result.test_bits_per_dim:.4f}",
    ]
    if result.test_nll_nats is not None:
        lines += [
            f"train NLL: {result.train_nll_nats:.2f} nats/image",
            f"test NLL: {result.test_nll_nats:.2f} nats/image",
        ]
    if result.nonfinite_steps:
        lines.append(f"skipped non-finite steps: {result.nonfinite_steps}")
    return "\n".join(lines)
