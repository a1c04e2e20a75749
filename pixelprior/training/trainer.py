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
step. So ``N`` steps straight and ``k`` steps + resume + ``N - k`` steps give the same weights. A resume with other
flags than its checkpoint's run is refused unless asked for (``resume.py``), and a run owns its folder for its
whole life (``run_folder.py``): a lock, nothing of another run overwritten, every file written whole.
"""

from __future__ import annotations

import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, TorchDynamoPlugin, broadcast_object_list, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import ColorPalette, GridDataset, parse_dataset
from ..models import AutoregressivePrior
from ..progress import progress_bar
from .build import (
    PriorObjective,
    build_prior,
    check_data_matches_model,
    first_items,
    load_codes_vqvae,
    load_splits,
    make_optimizer,
)
from .checkpoint import (
    begin_checkpoint,
    checkpoint_dir,
    checkpoint_step,
    commit_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    recover_checkpoints,
    resolve_resume,
    tmp_checkpoint_dir,
)
from .config import TrainConfig
from .ema import EMA
from .init_from import load_init_pipeline
from .loggers import MetricsLogger, check_logger_available
from .metrics import evaluate, nats_per_image
from .options import options_as_json
from .palette import (
    PALETTE_FILE,
    encode_dataset,
    fit_palette,
    is_palette_size,
    read_checkpoint_palette,
    read_palette,
    same_palette,
)
from .resume import (
    EMA_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    SCALER_FILE,
    TRAINER_STATE_FILE,
    ConfigChange,
    RunRecord,
    StateFileError,
    config_differences,
    describe_differences,
    load_model_weights,
    load_tensors_only,
    read_optimizer_state,
    read_rng_state,
    read_run_id,
    read_tensors,
    restore_rng_state,
    rng_file,
    rng_state,
    save_torch_file,
)
from .run_folder import (
    OutputError,
    RunLock,
    earlier_outputs,
    finish_publishing,
    move_aside,
    pipeline_outputs,
    prepare_output_dir,
    publishing,
    replace_atomically,
    write_json,
    writing,
)
from .sampler import ShardedBatchSampler
from .schedules import lr_factor

RESULTS_FILE = "train_results.json"


class NonFiniteLossError(RuntimeError):
    """The training loss was NaN or infinite at a step (and ``--skip_nonfinite`` was not given), or the run ended
    with non-finite bits/dim or with every step skipped (then no pipeline is saved)."""


@dataclass
class TrainResult:
    """What a run measured: exact bits/dim over each split, nats per image for binary data, and its counters.

    ``config_changes`` lists the flags its resumes changed (``--allow_config_change``) and ``inexact_resume`` the
    states a resume went without (``--allow_inexact_resume``); both are empty for an exact run.
    """

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
    run_id: str | None = None
    config_changes: list[ConfigChange] = field(default_factory=list)
    inexact_resume: list[str] = field(default_factory=list)


@dataclass
class StepOutcome:
    """One optimizer step as the loop saw it: the step just taken (1-based), the learning rate it used, and the
    loss of every micro-batch on every process (``finite`` when all were; a step that is not is skipped)."""

    step: int
    learning_rate: float
    losses: list[float]
    loss: float
    finite: bool


def _launched_on_cpu_only() -> bool:
    """Several processes were launched (torchrun, ``accelerate launch``) on a machine with no accelerator.

    ``accelerate launch`` starts its workers through torchrun for a multi-process config, but Accelerate only
    joins them in a CPU (gloo) process group when told ``cpu=True``; without it each worker would train alone.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return world_size > 1 and not has_accelerator


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
        # Everything that can be known to fail is checked here, before any work: the data, the model, both splits
        # against the model, the VQModel of codes, the pipeline the run will save.
        set_seed(config.seed)
        train_set, test_set = load_splits(config)
        self.init_pipeline = load_init_pipeline(config) if config.init_from is not None else None
        self.palette_source: str | None = None  # the checkpoint a resumed palette was read from
        self.palette_note: str | None = None  # a palette a resume had to go without (--allow_inexact_resume)
        self.palette = self.make_palette(train_set)  # before the model: the data it sees are the palette's ids
        if self.palette is not None:
            train_set, test_set = encode_dataset(self.palette, train_set), encode_dataset(self.palette, test_set)
        self.prior = build_prior(config, self.init_pipeline)
        check_data_matches_model(self.prior, train_set, config, "train")
        check_data_matches_model(self.prior, test_set, config, "test")
        self.vqvae = load_codes_vqvae(config)
        self._pipeline(self.prior)  # the pipeline's own checks (a VQModel's codebook and grid against the prior)
        self.train_set = first_items(train_set, config.max_train_samples)
        self.test_set = first_items(test_set, config.max_eval_samples)
        acc = self.accelerator
        ShardedBatchSampler(len(self.train_set), config.batch_size, acc.num_processes, acc.process_index)  # its checks
        self.max_steps = config.total_steps(len(self.train_set), acc.num_processes)  # --max_steps or --num_epochs
        if config.gradient_checkpointing:
            self.prior.enable_gradient_checkpointing()
        # The training state. setup() wraps the objective and the optimizer for the processes and resumes it.
        self.objective: nn.Module = PriorObjective(self.prior)
        self.optimizer = make_optimizer(self.objective.parameters(), config.learning_rate)
        self.lr_factor = lr_factor(
            config.lr_schedule, decay=config.lr_decay, warmup_steps=config.lr_warmup_steps, max_steps=self.max_steps
        )
        self.ema: EMA | None = None  # made in setup(), once the weights are on their device
        self.step = 0
        self.nonfinite_steps = 0
        self.run_id: str | None = uuid.uuid4().hex  # a resume takes its checkpoint's
        self.resumed_from: str | None = None
        self.record: RunRecord | None = None  # the resumed checkpoint's
        self.config_changes: list[ConfigChange] = []  # accepted by this run's resumes, oldest first
        self.inexact: list[str] = []  # states a resume went without
        self.lock: RunLock | None = None
        self.logger: MetricsLogger | None = None
        self.batches: Iterator[dict[str, torch.Tensor]] | None = None
        self.bar = None
        self.smoothed_loss: float | None = None  # the progress bar's running mean of the loss
        self.start_time, self.start_step = 0.0, 0
        self.hub_repo: str | None = None  # the full id of the --push_to_hub repository (main process), from setup()
        self.published_files = None  # the run's files (hub.RunFiles) once published (main process)
        self.last_sample_step: int | None = None  # the step of the last sample grid written

    @property
    def images_per_step(self) -> int:
        """Images per optimizer step, over every micro-batch and process."""
        return self.config.batch_size * self.config.gradient_accumulation_steps * self.accelerator.num_processes

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): a pure function of the step and the flags."""
        return self.config.learning_rate * self.lr_factor(step)

    # ---------------------------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        """Train, evaluate, save; every process returns the same :class:`TrainResult`."""
        try:
            self.setup()
            while self.step < self.max_steps:
                self.after_step(self.train_step())
            self.bar.close()
            return self.finish()
        finally:
            if self.bar is not None:
                self.bar.close()
            if self.logger is not None:
                self.logger.close()
            if self.lock is not None:
                self.lock.release()

    def setup(self) -> None:
        """Everything before step 1: the output folder, the processes, the resumed state, the logs, the data."""
        acc = self.accelerator
        self.claim_output_dir()
        if self.config.push_to_hub:
            self._on_main(self.prepare_hub_repo)  # a missing token or a refused repository: before step 1
        self.objective, self.optimizer = acc.prepare(self.objective, self.optimizer)
        if self.config.use_ema:
            self.ema = self.new_ema()
            warning = self.ema.horizon_warning(self.max_steps)
            if warning is not None and acc.is_main_process:
                warnings.warn(warning, UserWarning, stacklevel=2)
        self.resume()
        self.open_logs()
        self.batches = self.training_batches()
        self.print_header()
        self.objective.train()
        self.start_time, self.start_step = time.perf_counter(), self.step
        self.bar = progress_bar(
            total=self.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not acc.is_local_main_process,
        )

    def train_step(self) -> StepOutcome:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; a non-finite one is not taken."""
        acc, accumulation = self.accelerator, self.config.gradient_accumulation_steps
        lr = self.learning_rate_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
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
                "--resume_from_checkpoint latest and a lower --learning_rate or a --max_grad_norm (with "
                "--allow_config_change learning_rate,max_grad_norm), or pass --skip_nonfinite to skip such steps."
            )
        self._print(f"Skipped step {outcome.step}: non-finite loss {outcome.losses} ({self.nonfinite_steps} so far).")

    def after_step(self, outcome: StepOutcome) -> None:
        """The periodic work after a step: progress, logs, evaluation, samples, checkpoints."""
        config = self.config
        self.show_progress(outcome)
        if self.step % config.log_steps == 0 or not outcome.finite:
            self.log_step(outcome)
        if self._due(config.eval_steps) and self.step < self.max_steps:
            self.evaluate_test()
        if self._due(config.sample_steps):
            self.save_samples(self.step)
        if self._due(config.checkpointing_steps):
            self.save_checkpoint(self.step)

    def finish(self) -> TrainResult:
        """After the last step: exact bits/dim over both splits, then the pipeline and ``train_results.json``."""
        seconds = time.perf_counter() - self.start_time
        train_bpd = self.evaluate(self.train_set)
        test_bpd = self.evaluate(self.test_set)
        self.logger.log({"train/bits_per_dim": train_bpd, "test/bits_per_dim": test_bpd}, self.step)
        result = self.make_result(train_bpd, test_bpd, seconds)
        self.check_result(result)
        self.save_outputs(result)
        self._on_main(self.prune_checkpoints)  # again: a kill between a commit and its prune left one too many
        return result

    # ------------------------------------------------------------------------------- the output folder, resuming
    def claim_output_dir(self) -> None:
        """Before any work: lock the output folder, repair what a crash left, find the checkpoint to resume, and
        refuse (or with ``--overwrite_output_dir`` move aside) what another run left there."""
        self._on_main(self._lock_and_recover)
        self.resumed_from = resolve_resume(self.config.output_dir, self.config.resume_from_checkpoint)
        if self.resumed_from is not None:
            self.record = RunRecord.load(self.resumed_from)
            self.run_id = self.record.run_id
        self._on_main(self._set_aside_earlier_outputs)

    def _lock_and_recover(self) -> None:
        out = self.config.output_dir
        prepare_output_dir(out)
        self.lock = RunLock(out)  # a second run stops here, naming this one's PID
        for path in recover_checkpoints(out).restored:
            self._print(f"Restored {path}: a re-save of it was interrupted.")
        if finish_publishing(out) == "completed":
            self._print(f"Completed the interrupted save of the pipeline in {out}.")

    def _set_aside_earlier_outputs(self) -> None:
        out, names = self.config.output_dir, [os.path.basename(p) for _, p in list_checkpoints(self.config.output_dir)]
        if self.record is None:  # a new run: nothing of an earlier one may be overwritten
            earlier = earlier_outputs(out, names)
        else:  # a resume: checkpoints and a pipeline of other runs are not this run's to prune or replace
            earlier = [name for name in names if not self._owned(os.path.join(out, name))]
            if read_run_id(out, RESULTS_FILE)[1] != self.run_id:
                earlier += pipeline_outputs(out)
        if not earlier:
            return
        if not self.config.overwrite_output_dir:
            task = "a new run" if self.record is None else f"resuming {self.resumed_from}"
            raise ValueError(
                f"Expected --output_dir {out!r} to hold nothing of another run for {task}, got {earlier[:6]}: pass "
                "--resume_from_checkpoint latest to continue that run, --overwrite_output_dir to start over (what it "
                "left is moved to an overwritten-TIME/ folder, nothing is deleted), or another --output_dir."
            )
        aside = move_aside(out, earlier)
        self._print(f"Moved {', '.join(earlier)} of an earlier run to {aside} (--overwrite_output_dir).")

    def _owned(self, checkpoint: str) -> bool:
        """Whether ``checkpoint`` was written by this run (or the runs it resumes): only those are pruned."""
        return read_run_id(checkpoint) == (True, self.run_id)

    def resume(self) -> None:
        """Restore the checkpoint named by ``resume_from_checkpoint``, if any (``self.step`` is then its step)."""
        if self.record is None:
            if self.config.resume_from_checkpoint == "latest":
                self._print(f"No checkpoint in {self.config.output_dir} to resume from: starting a new run.")
            return
        self.accept_config_changes()
        self.load_checkpoint(self.resumed_from)
        self._print(f"Resumed from {self.resumed_from} at step {self.step}.")

    def accept_config_changes(self) -> None:
        """Compare the flags with the checkpoint's run: refuse any change not named in ``--allow_config_change``."""
        record, path = self.record, self.resumed_from
        differences = config_differences(record, self.config, self.accelerator.num_processes)
        refused = {name: d for name, d in differences.items() if name not in self.config.allow_config_change}
        if refused:
            raise ValueError(
                f"Cannot resume {path} exactly: flags differ from its run's: {describe_differences(refused)}. Pass "
                f"the checkpoint's values, or --allow_config_change {','.join(refused)} to change them from step "
                f"{record.step} on."
            )
        if self.max_steps < record.step:
            raise ValueError(f"Expected --max_steps >= {record.step} (the step of {path}), got {self.max_steps}.")
        accepted = [ConfigChange(record.step, name, old, new) for name, (old, new) in differences.items()]
        self.config_changes = [*record.config_changes, *accepted]
        if accepted:
            self._print(
                f"Resuming {path} with changed flags from step {record.step} on: {describe_differences(differences)}."
            )

    def load_checkpoint(self, path: str) -> int:
        """Restore the state saved in ``path`` (every process); returns its step."""
        record = self.record if self.record is not None else RunRecord.load(path)
        if record.step != checkpoint_step(path):
            raise ValueError(
                f"Expected step {checkpoint_step(path)} in {path}/{TRAINER_STATE_FILE}, got {record.step}."
            )
        self.step, self.nonfinite_steps, self.inexact = record.step, record.nonfinite_steps, list(record.inexact)
        acc = self.accelerator
        if self.fsdp:  # sharded model and optimizer files, Accelerate's own (no custom state is registered)
            try:
                acc.load_state(path)
            except (OSError, RuntimeError, ValueError) as error:
                raise ValueError(
                    f"Cannot resume from {path}: Accelerate could not load its FSDP state ({error})."
                ) from None
        else:
            try:
                load_model_weights(self.prior, os.path.join(path, MODEL_FILE), "the model's weights")
            except StateFileError as error:
                raise ValueError(f"Cannot resume from {path}: {error}.") from None
            self._restore(path, "a fresh optimizer state", self._load_optimizer)
        if acc.scaler is not None and not self.fsdp:
            self._restore(
                path,
                "a fresh loss scale",
                lambda p: acc.scaler.load_state_dict(
                    load_tensors_only(os.path.join(p, SCALER_FILE), "the fp16 loss scaler")
                ),
            )
        rng = os.path.join(path, rng_file(acc.process_index))
        self._restore(path, "freshly seeded generators", lambda p: restore_rng_state(read_rng_state(rng), rng))
        self._load_ema(path, record)
        self.check_resumed_palette(path)
        return record.step

    def _load_optimizer(self, path: str) -> None:
        shapes = [tuple(p.shape) for group in self.optimizer.param_groups for p in group["params"]]
        self.optimizer.load_state_dict(read_optimizer_state(os.path.join(path, OPTIMIZER_FILE), shapes))

    def _load_ema(self, path: str, record: RunRecord) -> None:
        if self.ema is None:
            return
        if not record.config.get("use_ema", False):  # turned on by an accepted change: start from the weights
            self.ema = self.new_ema()
            return
        file = os.path.join(path, EMA_FILE)

        def fallback() -> None:
            self.ema = self.new_ema()

        self._restore(
            path,
            "an average restarted from the resumed weights",
            lambda p: self.ema.load_state_dict(read_tensors(file, self.ema.shadow, "the EMA weights")),
            fallback,
        )

    def _restore(
        self, path: str, fallback: str, load: Callable[[str], Any], on_fallback: Callable[[], None] | None = None
    ) -> None:
        """``load(path)``; a missing, corrupt or refused file stops the resume, or with ``--allow_inexact_resume``
        is recorded (log, metrics, ``train_results.json``) and gone without."""
        try:
            load(path)
        except StateFileError as error:
            if not self.config.allow_inexact_resume:
                raise ValueError(
                    f"Cannot resume {path} exactly: {error}. Pass --allow_inexact_resume to continue with {fallback}."
                ) from None
            note = f"resumed at step {self.step} without {error}: continued with {fallback}"
            self.inexact.append(note)
            self._print(f"Inexact resume (--allow_inexact_resume): {note}.")
            if on_fallback is not None:
                on_fallback()

    def open_logs(self) -> None:
        """Open the metrics log (dropping what a killed attempt wrote after the run's first step) and record what
        a resume changed."""
        config = self.config
        self.logger = MetricsLogger(
            config.logger, config.output_dir, self.accelerator, hparams=options_as_json(config), resume_step=self.step
        )
        changed = [asdict(c) for c in self.config_changes if c.step == self.step and self.record is not None]
        if changed or (self.record is not None and self.inexact != self.record.inexact):
            new_inexact = self.inexact[len(self.record.inexact) :]
            self.logger.event("resume", {"config_changes": changed, "inexact": new_inexact}, self.step)

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
                f"{len(self.test_set)} test images, {self.max_steps} steps of {config.batch_size} x "
                f"{config.gradient_accumulation_steps} micro-batch(es) x {acc.num_processes} process(es) = "
                f"{self.images_per_step} images."
            )

    # --------------------------------------------------------------------------- the palette, the EMA, the Hub
    def make_palette(self, train_set: GridDataset) -> ColorPalette | None:
        """The run's colour palette (``palette.py``): the ``--init_from`` pipeline's, a resumed checkpoint's, or
        ``--palette``'s (fitted once, before step 1), or None."""
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
            resumed = self.resumed_palette(checkpoint, train_set)
            if resumed is not None or config.palette is None:
                return resumed
        return self.new_palette(train_set) if config.palette is not None else None

    def resumed_palette(self, checkpoint: str, train_set: GridDataset) -> ColorPalette | None:
        """The palette of the run ``checkpoint`` belongs to, read from it exactly (or refused); None when the run
        had none, or ``--allow_config_change palette`` starts a new one."""
        config = self.config
        try:
            old = RunRecord.load(checkpoint).config.get("palette")
        except ValueError:
            if config.palette is None:
                return None  # the resume itself names the record's problem (claim_output_dir)
            raise
        if old != config.palette:
            if "palette" in config.allow_config_change:
                return None
            raise ValueError(
                f"Cannot resume {checkpoint} exactly: flags differ from its run's: "
                f"{describe_differences({'palette': (old, config.palette)})}. Pass the checkpoint's values, or "
                "--allow_config_change palette to change them."
            )
        if config.palette is None:
            return None
        fallback = "a palette fitted again" if is_palette_size(config.palette) else f"the palette {config.palette}"
        try:
            saved = read_checkpoint_palette(checkpoint)
        except StateFileError as error:
            if not config.allow_inexact_resume:
                raise ValueError(
                    f"Cannot resume {checkpoint} exactly: {error}. Pass --allow_inexact_resume to continue with "
                    f"{fallback}."
                ) from None
            self.palette_note = (
                f"resumed at step {checkpoint_step(checkpoint)} without {error}: continued with {fallback}"
            )
            return self.new_palette(train_set)
        if saved.num_values != train_set.num_values or (
            not is_palette_size(config.palette) and not same_palette(read_palette(config.palette), saved)
        ):
            raise ValueError(
                f"Cannot resume {checkpoint} with --palette {config.palette}: its run's palette (in the checkpoint) "
                "is another one. Pass the palette of its run."
            )
        self.palette_source = checkpoint
        return saved

    def new_palette(self, train_set: GridDataset) -> ColorPalette:
        """``--palette``'s palette: read from its file, or fitted on the main process and shared with the others
        (the same centres everywhere: float rounding varies between CPUs)."""
        config, acc = self.config, self.accelerator
        fitted = is_palette_size(config.palette)
        palette = None
        if acc.is_main_process or not fitted:
            palette = fit_palette(config.palette, train_set, config.max_train_samples, config.seed)
        if fitted and acc.num_processes > 1:
            from accelerate.utils import broadcast

            centers = palette.centers if palette is not None else torch.zeros(int(config.palette), 3)
            palette = ColorPalette(broadcast(centers.to(acc.device)).cpu(), train_set.num_values)
        return palette

    def check_resumed_palette(self, path: str) -> None:
        """The palette was read before the output folder was locked: the checkpoint resumed must hold it too."""
        if self.palette_note is not None:
            self.inexact.append(self.palette_note)
            self._print(f"Inexact resume (--allow_inexact_resume): {self.palette_note}.")
        if self.palette is None or self.palette_source in (None, path):
            return
        try:
            saved = read_checkpoint_palette(path)
        except StateFileError as error:
            raise ValueError(f"Cannot resume {path} exactly: {error}.") from None
        if not same_palette(saved, self.palette):
            raise ValueError(f"Cannot resume {path}: its palette is not the one of {self.palette_source}.")

    def new_ema(self) -> EMA:
        """The average of the weights, initialised from them (on their device), with the run's warm-up."""
        config = self.config
        return EMA(
            self.prior,
            config.ema_decay,
            warmup=config.ema_warmup,
            inv_gamma=config.ema_inv_gamma,
            power=config.ema_power,
        )

    def prepare_hub_repo(self) -> None:
        """``--push_to_hub``: check the token and create (or find) the repository (main process, before step 1)."""
        from .hub import prepare_hub_repo

        self.hub_repo = prepare_hub_repo(self.config)

    # ------------------------------------------------------------------------------------------ periodic work
    def _due(self, every: int | None) -> bool:
        return bool(every) and self.step % every == 0

    def images_per_second(self) -> float:
        return (self.step - self.start_step) * self.images_per_step / (time.perf_counter() - self.start_time)

    def show_progress(self, outcome: StepOutcome) -> None:
        if outcome.finite:
            previous = self.smoothed_loss
            self.smoothed_loss = outcome.loss if previous is None else 0.98 * previous + 0.02 * outcome.loss
        smoothed = self.smoothed_loss
        self.bar.set_postfix(  # no redraw of its own: the bar redraws a few times a second (progress.py)
            loss=f"{outcome.loss:.4f}",
            bpd=f"{smoothed:.4f}" if smoothed else "nan",
            img_s=f"{self.images_per_second():.0f}",
            refresh=False,
        )
        self.bar.update(1)

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
        path = self.sample_grid_path(step)
        with self._averaged_weights():
            prior = self._full_prior()  # the sampler runs the prior in eval mode and restores its mode
            self._on_main(lambda: self._write_samples(prior, path))
        self.last_sample_step = step
        return path if self.accelerator.is_main_process else None

    def _write_samples(self, prior: AutoregressivePrior, path: str) -> None:
        from ..pipelines import make_image_grid

        n = self.config.num_sample_images
        labels = torch.arange(n) % prior.num_classes if prior.num_classes is not None else None
        generator = torch.Generator().manual_seed(self.config.seed)
        images = self._pipeline(prior)(batch_size=n, class_labels=labels, generator=generator, progress=False).images
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with writing(path, "the sample grid"), replace_atomically(path) as tmp:
            make_image_grid(images).save(tmp, format="PNG")

    def save_checkpoint(self, step: int) -> str:
        """Write ``output_dir/checkpoint-STEP`` atomically (every process takes part) and apply the total limit.

        A failure to write (a full disk) names the file; the checkpoint is not published and the earlier ones are
        left as they were.
        """
        out = self.config.output_dir
        tmp = tmp_checkpoint_dir(out, step)
        try:
            self._on_main(lambda: begin_checkpoint(out, step))
            self._write_checkpoint_files(tmp, step)
            self._on_main(lambda: self._commit_checkpoint(tmp, step))
        except OutputError as error:
            if self.accelerator.is_main_process:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)  # free the space a partial copy took
            earlier = latest_checkpoint(out)
            raise OutputError(
                f"{error} Checkpoint {step} was not saved; the earlier checkpoints are intact (the latest: "
                f"{earlier or 'none'})."
            ) from error
        return checkpoint_dir(out, step)

    def _write_checkpoint_files(self, tmp: str, step: int) -> None:
        """Every process writes its RNG states; the main one the weights, optimizer, EMA and, last, the record."""
        from safetensors.torch import save_file, save_model

        acc = self.accelerator
        if self.fsdp:  # collective: sharded weights and optimizer (and the RNG files) as Accelerate writes them
            with writing(tmp, "checkpoint"):
                acc.save_state(tmp, safe_serialization=True)
        else:
            rng = os.path.join(tmp, rng_file(acc.process_index))
            with writing(rng, "checkpoint file"):
                save_torch_file(rng_state(), rng)
        files: list[tuple[str, Callable[[str], Any]]] = []
        if not self.fsdp:
            files.append((MODEL_FILE, lambda p: save_model(self.prior, p)))
            files.append((OPTIMIZER_FILE, lambda p: save_torch_file(self.optimizer.state_dict(), p)))
            if acc.scaler is not None:
                files.append((SCALER_FILE, lambda p: save_torch_file(acc.scaler.state_dict(), p)))
        if self.ema is not None:
            metadata = {"decay": str(self.ema.decay)}
            files.append((EMA_FILE, lambda p: save_file(self.ema.state_dict(), p, metadata=metadata)))
        if self.palette is not None:  # part of the run: a resume takes it instead of fitting again
            files.append((PALETTE_FILE, lambda p: self.palette.save(p)))
        record = RunRecord(
            step=step,
            config=options_as_json(self.config),
            run_id=self.run_id,
            num_processes=acc.num_processes,
            nonfinite_steps=self.nonfinite_steps,
            config_changes=self.config_changes,
            inexact=self.inexact,
        )
        files.append((TRAINER_STATE_FILE, lambda p: record.save(os.path.dirname(p))))  # last: the record

        def write_all() -> None:
            for name, write in files:
                with writing(os.path.join(tmp, name), "checkpoint file"):
                    write(os.path.join(tmp, name))

        self._on_main(write_all)

    def _commit_checkpoint(self, tmp: str, step: int) -> None:
        with writing(checkpoint_dir(self.config.output_dir, step), "checkpoint"):
            commit_checkpoint(tmp, self.config.output_dir, step)
            self.prune_checkpoints()

    def prune_checkpoints(self) -> None:
        """Apply ``--checkpoints_total_limit`` to this run's own checkpoints (main process)."""
        limit = self.config.checkpoints_total_limit
        prune_checkpoints(self.config.output_dir, limit, owned=self._owned, log=self._print)

    # ---------------------------------------------------------------------------------------------- the end
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
            run_id=self.run_id,
            config_changes=list(self.config_changes),
            inexact_resume=list(self.inexact),
        )

    def check_result(self, result: TrainResult) -> None:
        """A run whose bits/dim are not finite, or whose every step was skipped, fails: nothing is saved over what
        the folder held before (``NonFiniteLossError``: ``pixelprior train`` exits with status 1)."""
        finite = math.isfinite(result.train_bits_per_dim) and math.isfinite(result.test_bits_per_dim)
        all_skipped = result.steps > 0 and result.nonfinite_steps >= result.steps
        if finite and not all_skipped:
            return
        if all_skipped:
            what = f"all {result.steps} of its steps were skipped (non-finite losses): the model never trained"
        else:
            bpd = f"train {result.train_bits_per_dim}, test {result.test_bits_per_dim}"
            what = f"its final bits/dim are not finite ({bpd})"
        self.logger.event("failed", {"reason": what}, self.step)
        last = latest_checkpoint(self.config.output_dir)
        raise NonFiniteLossError(
            f"The run failed: {what}. No pipeline was saved (the folder keeps what it held before). The last "
            f"checkpoint is {last or 'none'}: resume it with a lower --learning_rate or a --max_grad_norm "
            "(--allow_config_change learning_rate,max_grad_norm)."
        )

    def save_outputs(self, result: TrainResult) -> None:
        """Publish the pipeline (the EMA weights with ``--use_ema``), ``train_results.json``, the model card and
        ``logs/curve.png`` into the output folder in one resumable move (``run_folder.publish_folder``): a crash
        leaves the old files or the new. Then, with ``--push_to_hub``, upload them."""
        if self.config.num_sample_images > 0 and self.last_sample_step != self.step:
            self.save_samples(self.step)  # the card shows the final weights' samples
        with self._averaged_weights():
            prior = self._full_prior()
            self._on_main(lambda: self._publish_outputs(prior, result))
        if self.config.push_to_hub:
            self._on_main(lambda: self.push_outputs(result))

    def _publish_outputs(self, prior: AutoregressivePrior, result: TrainResult) -> None:
        out = self.config.output_dir
        with writing(out, "the pipeline into"), publishing(out) as folder:
            pipeline = self.write_outputs(folder, prior, result)
        self._print(format_result(result))
        weights = "EMA weights" if self.ema is not None else "weights"
        self._print(f"Saved the pipeline ({weights}) to {out} ({type(pipeline).__name__}.from_pretrained).")

    def write_outputs(self, folder: str, prior: AutoregressivePrior, result: TrainResult):
        """Write what a finished run leaves into ``folder`` (then moved into the output folder): the pipeline,
        ``train_results.json``, ``logs/curve.png`` and the model card (``hub.py``). Returns the pipeline."""
        from .hub import training_card, write_card

        pipeline = self._pipeline(prior)
        pipeline.save_pretrained(folder)
        write_json(os.path.join(folder, RESULTS_FILE), {**asdict(result), "config": options_as_json(self.config)})
        files = self.published_files = self.run_files(pipeline, self.write_curve(folder))
        sizes = (len(self.train_set), len(self.test_set))
        card = training_card(self.config, result, self.images_per_step, sizes, files)
        write_card(folder, pipeline, self.hub_repo or self.config.output_dir, card)
        return pipeline

    def write_curve(self, folder: str) -> str | None:
        """Draw ``folder/logs/curve.png`` from the logged metrics (main process); None when nothing was logged."""
        from .curve import CURVE_FILE, LearningCurve

        curve = LearningCurve.from_records(self.logger.history)
        if curve.is_empty():
            return None
        weights = "EMA weights" if self.ema is not None else "weights"
        title = f"{self.config.model_name} on {self.config.dataset}: bits/dim"
        curve.plot(os.path.join(folder, CURVE_FILE), title, evaluated=weights)
        return CURVE_FILE

    def run_files(self, pipeline: Any, curve: str | None):
        """What the card shows and a push uploads, relative to the output folder (``hub.RunFiles``)."""
        from .hub import RunFiles

        grid = self.sample_grid_path(self.step) if self.config.num_sample_images > 0 else None
        return RunFiles(
            components=tuple(name for name, value in pipeline.components.items() if value is not None),
            sample_grid=os.path.relpath(grid, self.config.output_dir) if grid is not None else None,
            curve=curve,
        )

    def push_outputs(self, result: TrainResult) -> None:
        """``--push_to_hub``: upload the published run (main process; after the pipeline is saved)."""
        from .hub import push_run

        url = push_run(self.config, self.hub_repo, self.published_files, result.steps)
        self._print(f"Pushed {self.config.output_dir} to https://huggingface.co/{self.hub_repo} ({url}).")

    # ------------------------------------------------------------------------------------------------- helpers
    def _print(self, *args: Any) -> None:
        self.accelerator.print(*args)

    def _on_main(self, work: Callable[[], Any]) -> None:
        """Run ``work`` on the main process; an error there is raised on every process, so none waits forever."""
        acc = self.accelerator
        error = None
        if acc.is_main_process:
            try:
                work()
            except Exception as exc:  # shared below, then raised everywhere
                error = exc
        if acc.num_processes > 1:
            error = broadcast_object_list([error])[0]
        if error is not None:
            raise error

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
        prior = build_prior(self.config, self.init_pipeline)
        prior.load_state_dict({k.removeprefix("prior."): v for k, v in state.items()})
        return prior

    def _pipeline(self, prior: AutoregressivePrior):
        from ..pipelines import PixelPriorPipeline, VQPriorPipeline

        if self.vqvae is None:
            return PixelPriorPipeline(prior=prior, palette=self.palette)
        return VQPriorPipeline(prior=prior, vqvae=self.vqvae.to(prior.device))


def train(config: TrainConfig) -> TrainResult:
    """Train the model of ``config`` on ``config.dataset`` and save the pipeline in ``config.output_dir``.

    Every process returns the same :class:`TrainResult`; only the main process prints and writes files.

    Raises:
        NonFiniteLossError: a step's loss was NaN or infinite and ``config.skip_nonfinite`` is False, or the run
            ended with non-finite bits/dim or with every step skipped.
        ValueError: anything known before the first step: bad configuration, data that do not fit the model, an
            output folder that is locked, unwritable or holds another run's outputs, a checkpoint that cannot be
            resumed exactly.
        OutputError: a checkpoint or the pipeline could not be written (a full disk); earlier ones are intact.
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
    for change in result.config_changes:
        lines.append(f"changed on resuming at step {change.step}: --{change.name} {change.old} -> {change.new}")
    for note in result.inexact_resume:
        lines.append(f"inexact resume: {note}")
    return "\n".join(lines)
