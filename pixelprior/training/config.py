"""The training configuration: one dataclass whose fields are the ``pixelprior train`` flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LR_SCHEDULES = ("exponential", "constant", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")
LOGGERS = ("jsonl", "tensorboard", "none")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """What ``pixelprior train`` runs; every field is the command-line flag of the same name.

    Args:
        model: a registered prior name (``pixelprior.list_priors()``); or None with ``model_config``.
        output_dir: the run's folder: the final pipeline, ``checkpoint-STEP`` folders, ``samples/``, ``logs/``.
        model_config: a prior's ``config.json`` (or a folder holding one, or any JSON object with ``_class_name``
            and the constructor's arguments), instead of ``model``. Only the architecture is read, not weights.
        model_kwargs: keyword overrides of the configuration (``--model_kwargs`` JSON).
        dataset: a dataset spec for :func:`pixelprior.data.load_dataset` (``mnist5k``, a folder, ``codes:FILE``...).
        binarize: threshold the images at 0.5 (the model then needs ``num_values = 2``).
        resolution: resize images to this size (passed to the dataset loader).
        num_bits: quantize images to ``2**num_bits`` values (passed to the dataset loader).
        data_dir: the root folder of ``torchvision:`` dataset files (passed to the dataset loader).
        max_train_samples: train on the first N images of the train split only (quick runs, tests).
        max_eval_samples: evaluate on the first N images of each split only.
        max_steps: optimizer steps.
        batch_size: images per micro-batch and per process.
        gradient_accumulation_steps: micro-batches per optimizer step; an optimizer step sees
            ``batch_size * gradient_accumulation_steps * num_processes`` images.
        learning_rate: Adam's base learning rate.
        lr_schedule: ``"exponential"`` (PixelCNN++: ``lr * lr_decay**step``), ``"constant"`` or ``"cosine"``
            (linear warm-up over ``lr_warmup_steps``, then a half cosine to 0 at ``max_steps``). Every schedule is a
            pure function of the step, so a resumed run continues it exactly.
        lr_decay: the per-step factor of the exponential schedule (PixelCNN++: 0.999995).
        lr_warmup_steps: linear warm-up steps (every schedule).
        max_grad_norm: clip the gradient's global norm to this (None: no clipping).
        mixed_precision: ``"no"``, ``"fp16"`` (GPU) or ``"bf16"`` autocast.
        use_ema: keep a Polyak average of the weights; evaluation, samples and the saved pipeline use it.
        ema_decay: ``ema = decay * ema + (1 - decay) * weights`` after every optimizer step.
        eval_steps: evaluate test bits/dim (the whole test split) every N steps (None: at the end only).
        eval_batch_size: images per evaluation batch and process.
        sample_steps: write a PNG grid of samples to ``output_dir/samples/step-N.png`` every N steps.
        num_sample_images: images per sample grid.
        checkpointing_steps: save ``output_dir/checkpoint-STEP`` every N steps (None: never).
        checkpoints_total_limit: keep only the newest N checkpoints (None: keep all).
        resume_from_checkpoint: ``"latest"`` (the newest complete checkpoint of ``output_dir``; a fresh start when
            there is none) or a checkpoint folder.
        skip_nonfinite: skip (and count) optimizer steps whose loss is not finite instead of stopping.
        logger: ``"jsonl"`` (``output_dir/logs/metrics.jsonl``), ``"tensorboard"`` or ``"none"``.
        log_steps: log the training loss every N steps.
        seed: seeds the model's initialization, the data order and every other random draw.
        gradient_checkpointing: recompute each block's activations in the backward pass (less memory).
        compile: ``torch.compile`` the training step's model (inductor).
        compile_mode: ``torch.compile``'s mode with ``compile``: ``"default"``, ``"reduce-overhead"`` (CUDA graphs:
            the step's kernels replayed without launching each from Python), ``"max-autotune"`` or
            ``"max-autotune-no-cudagraphs"``.
    """

    model: str | None
    output_dir: str
    model_config: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist5k"
    binarize: bool = False
    resolution: int | None = None
    num_bits: int | None = None
    data_dir: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_steps: int = 1000
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    lr_schedule: str = "exponential"
    lr_decay: float = 0.999995
    lr_warmup_steps: int = 0
    max_grad_norm: float | None = None
    mixed_precision: str = "no"
    use_ema: bool = False
    ema_decay: float = 0.9995
    eval_steps: int | None = None
    eval_batch_size: int = 250
    sample_steps: int | None = None
    num_sample_images: int = 16
    checkpointing_steps: int | None = None
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    skip_nonfinite: bool = False
    logger: str = "jsonl"
    log_steps: int = 10
    seed: int = 0
    gradient_checkpointing: bool = False
    compile: bool = False
    compile_mode: str = "default"

    def __post_init__(self) -> None:
        if (self.model is None) == (self.model_config is None):
            raise ValueError(
                f"Expected exactly one of model and model_config, got model={self.model!r} and "
                f"model_config={self.model_config!r}."
            )
        positive = ["max_steps", "batch_size", "gradient_accumulation_steps", "eval_batch_size", "num_sample_images"]
        positive += ["log_steps"]
        optional = ["resolution", "num_bits", "max_train_samples", "max_eval_samples", "eval_steps", "sample_steps"]
        optional += ["checkpointing_steps", "checkpoints_total_limit"]
        for name in positive + optional:
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected {name} to be a positive int, got {value!r}.")
        if isinstance(self.lr_warmup_steps, bool) or not isinstance(self.lr_warmup_steps, int):
            raise ValueError(f"Expected lr_warmup_steps to be an int >= 0, got {self.lr_warmup_steps!r}.")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"Expected lr_warmup_steps to be an int >= 0, got {self.lr_warmup_steps!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"Expected learning_rate > 0, got {self.learning_rate!r}.")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"Expected lr_decay in (0, 1], got {self.lr_decay!r}.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"Expected ema_decay in [0, 1), got {self.ema_decay!r}.")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"Expected max_grad_norm > 0 or None, got {self.max_grad_norm!r}.")
        for name, allowed in (
            ("lr_schedule", LR_SCHEDULES),
            ("mixed_precision", MIXED_PRECISION),
            ("logger", LOGGERS),
            ("compile_mode", COMPILE_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Expected {name} to be one of {list(allowed)}, got {getattr(self, name)!r}.")
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"Expected --compile with compile_mode={self.compile_mode!r}, got compile=False.")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"Expected model_kwargs to be a dict, got {type(self.model_kwargs).__name__}.")

    @property
    def model_name(self) -> str:
        """The model as the user named it: the registry name or the config file."""
        return self.model if self.model is not None else self.model_config
