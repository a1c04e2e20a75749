"""The training configuration: one dataclass whose fields are the ``pixelprior train`` flags.

Each field is declared once with :func:`~pixelprior.training.options.option`: its type, default, check, help and
``--help`` group. :class:`TrainConfig` checks its values with them, and ``pixelprior train`` derives its flags from
them (``pixelprior.cli.arguments.add_options``), so the command line and the library cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .options import (
    NONNEGATIVE_INT,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    Alias,
    Check,
    check_options,
    describe_options,
    in_range,
    option,
    option_info,
)

LR_SCHEDULES = ("exponential", "constant", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")
LOGGERS = ("jsonl", "tensorboard", "none")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

MODEL, DATA, OPTIMIZATION, PERIODIC, OUTPUT = (
    "model",
    "data",
    "optimization",
    "evaluation, samples, checkpoints, logs",
    "output folder and resuming",
)
HUB = "the Hugging Face Hub"


def _registered_prior(name: str) -> bool:
    from ..models import list_priors  # imported when checked: `pixelprior --help` does not load torch

    return name in list_priors()


def _registered_priors() -> str:
    from ..models import list_priors

    return f"a registered prior, one of {list_priors()}"


DEFAULT_MAX_STEPS = 1000


def _hub_dataset(name: str) -> str:
    """diffusers' ``--dataset_name``: a Hugging Face dataset, unless it is already a pixelprior spec."""
    from ..data import list_datasets

    return name if ":" in name or name in list_datasets() else f"hf:{name}"


def _image_folder(path: str) -> str:
    """diffusers' ``--train_data_dir``: an image folder (even one named like a built-in dataset)."""
    return f"folder:{path}"


REGISTERED_PRIOR = Check(_registered_prior, _registered_priors)
SEED = Check(lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")  # numpy's seed range (set_seed seeds numpy)
NUM_BITS = Check(lambda v: 1 <= v <= 8, "an integer in [1, 8]")


def _hub_repo_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _palette_ok(spec: str) -> bool:
    from .palette import palette_spec_ok

    return palette_spec_ok(spec)


PALETTE = Check(_palette_ok, "a number of colours >= 2, or a saved palette file or folder that exists")
HUB_REPO_ID = Check(_hub_repo_id, "a Hub repository id: name or user/name (letters, digits, '-', '_', '.')")


@dataclass(kw_only=True)  # keywords only: the model may be given by one of three fields, each defaulting to None
class TrainConfig:
    """What ``pixelprior train`` runs; every field is the command-line flag of the same name."""

    model: str | None = option(
        None,
        help="a registered prior, e.g. pixelcnn_mnist (pixelprior.list_priors()); or give --model_config or "
        "--init_from",
        group=MODEL,
        check=REGISTERED_PRIOR,
    )
    output_dir: str = option(
        help="the run's folder: the final pipeline, checkpoint-STEP folders, samples/, logs/",
        group=OUTPUT,
        resume="free",
    )
    model_config: str | None = option(
        None,
        help="instead of --model: a prior's config.json, its folder or a run (pipeline) folder (its "
        "prior/config.json); only the architecture is read, not weights (for those: --init_from)",
        group=MODEL,
    )
    init_from: str | None = option(
        None,
        help="instead of --model: fine-tune a trained pipeline (a folder or a Hub repo id; pixelprior train's or "
        "pixelprior convert's), taking its architecture, weights and palette; --model_kwargs may change dropout only",
        group=MODEL,
    )
    model_kwargs: dict[str, Any] = option(
        default_factory=dict, help="JSON overrides of the configuration, e.g. '{\"hidden_channels\": 64}'", group=MODEL
    )
    dataset: str = option(
        "mnist5k",
        help="mnist5k (built in), digits, an image folder, hf:NAME, torchvision:NAME or codes:FILE "
        "(pixelprior.data.load_dataset)",
        group=DATA,
        aliases=(
            Alias("--dataset_name", _hub_dataset, "diffusers' flag: a Hugging Face dataset, as --dataset hf:NAME"),
            Alias("--train_data_dir", _image_folder, "diffusers' flag: an image folder, as --dataset folder:DIR"),
        ),
    )
    binarize: bool = option(False, help="threshold the images at 0.5 (the model then needs num_values=2)", group=DATA)
    resolution: int | None = option(
        None, help="center-crop and resize images to this size", group=DATA, check=POSITIVE_INT
    )
    num_bits: int | None = option(
        None, help="keep the top num_bits bits: 2**num_bits values", group=DATA, check=NUM_BITS
    )
    palette: str | None = option(
        None,
        help="RGB images as colour ids (Image GPT): K fits a palette of K colours on the training images (k-means, "
        "--seed), or a saved palette (palette.safetensors, its folder, a pipeline folder); the model then needs "
        "in_channels=1, num_values=K, and the pipeline outputs RGB",
        group=DATA,
        check=PALETTE,
    )
    data_dir: str | None = option(None, help="the root folder of torchvision: dataset files", group=DATA)
    max_train_samples: int | None = option(
        None, help="train on the first N images of the train split only", group=DATA, check=POSITIVE_INT
    )
    max_eval_samples: int | None = option(
        None, help="evaluate on the first N images of each split only", group=DATA, check=POSITIVE_INT
    )
    max_steps: int | None = option(
        None,
        help=f"optimizer steps (default: {DEFAULT_MAX_STEPS}, or the steps of --num_epochs)",
        group=OPTIMIZATION,
        check=POSITIVE_INT,
    )
    num_epochs: int | None = option(
        None,
        help="instead of --max_steps (diffusers' flag): passes over the training images, converted to "
        "max_steps = ceil(num_epochs x floor(N / (batch_size x processes)) / gradient_accumulation_steps)",
        group=OPTIMIZATION,
        check=POSITIVE_INT,
    )
    batch_size: int = option(
        32,
        help="images per micro-batch and per process",
        group=OPTIMIZATION,
        check=POSITIVE_INT,
        aliases=("--train_batch_size",),
    )
    gradient_accumulation_steps: int = option(
        1,
        help="micro-batches per optimizer step: a step sees batch_size x gradient_accumulation_steps x processes "
        "images",
        group=OPTIMIZATION,
        check=POSITIVE_INT,
    )
    learning_rate: float = option(1e-3, help="Adam's base learning rate", group=OPTIMIZATION, check=POSITIVE_NUMBER)
    lr_schedule: str = option(
        "exponential",
        help="exponential: lr * lr_decay**step (PixelCNN++); constant; cosine: warm-up, then a half cosine to 0 at "
        "max_steps. A pure function of the step: a resumed run continues it exactly",
        group=OPTIMIZATION,
        choices=LR_SCHEDULES,
    )
    lr_decay: float = option(
        0.999995,
        help="the per-step factor of the exponential schedule (PixelCNN++: 0.999995)",
        group=OPTIMIZATION,
        check=in_range(0, 1, low_open=True),
    )
    lr_warmup_steps: int = option(
        0, help="linear learning-rate warm-up steps (every schedule)", group=OPTIMIZATION, check=NONNEGATIVE_INT
    )
    max_grad_norm: float | None = option(
        None, help="clip the gradient's global norm to this", group=OPTIMIZATION, check=POSITIVE_NUMBER
    )
    mixed_precision: str = option(
        "no", help="autocast: no, fp16 (GPU only) or bf16", group=OPTIMIZATION, choices=MIXED_PRECISION
    )
    use_ema: bool = option(
        True,
        help="keep an exponential moving average of the weights (--no_use_ema: none); evaluation, samples and the "
        "saved pipeline use it",
        group=OPTIMIZATION,
    )
    ema_decay: float = option(
        0.9995,
        help="ema = decay * ema + (1 - decay) * weights after every optimizer step; the largest decay with the "
        "warm-up",
        group=OPTIMIZATION,
        check=in_range(0, 1, high_open=True),
        aliases=("--ema_max_decay",),
    )
    ema_warmup: bool = option(
        True,
        help="grow the EMA's decay with the step k as diffusers' EMAModel: min(ema_decay, 1 - (1 + (k - 1) / "
        "ema_inv_gamma) ** -ema_power) (--no_ema_warmup: ema_decay from step 1, PixelCNN++'s Polyak averaging)",
        group=OPTIMIZATION,
    )
    ema_inv_gamma: float = option(
        100.0,
        help="the EMA warm-up's inverse multiplicative factor (diffusers' default 1 lags short runs: see ema.py)",
        group=OPTIMIZATION,
        check=POSITIVE_NUMBER,
    )
    ema_power: float = option(
        1.0,
        help="the EMA warm-up's exponent (with ema_inv_gamma 100: step k averages the last ~1 + (k - 1) / 100 steps)",
        group=OPTIMIZATION,
        check=POSITIVE_NUMBER,
    )
    eval_steps: int | None = option(
        None,
        help="exact test bits/dim over the whole test split every N steps (default: at the end only)",
        group=PERIODIC,
        check=POSITIVE_INT,
        resume="free",
    )
    eval_batch_size: int = option(
        250, help="images per evaluation batch and process", group=PERIODIC, check=POSITIVE_INT
    )
    sample_steps: int | None = option(
        None,
        help="a PNG grid of samples in output_dir/samples/step-N.png every N steps",
        group=PERIODIC,
        check=POSITIVE_INT,
        resume="free",
    )
    num_sample_images: int = option(
        16,
        help="images per sample grid (the periodic ones and the last, which the model card shows); 0: no grids",
        group=PERIODIC,
        check=NONNEGATIVE_INT,
        resume="free",
    )
    checkpointing_steps: int | None = option(
        None,
        help="save output_dir/checkpoint-N every N steps (default: never)",
        group=PERIODIC,
        check=POSITIVE_INT,
        resume="free",
    )
    checkpoints_total_limit: int | None = option(
        None, help="keep only the newest N checkpoints", group=PERIODIC, check=POSITIVE_INT, resume="free"
    )
    resume_from_checkpoint: str | None = option(
        None,
        help="'latest' (the newest complete checkpoint of output_dir; a new run when there is none) or a "
        "checkpoint-STEP folder",
        group=OUTPUT,
        resume="free",
    )
    overwrite_output_dir: bool = option(
        False,
        help="let a new run use an output_dir that holds another run's checkpoints or pipeline: they are moved into "
        "output_dir/overwritten-TIME/ (nothing is deleted)",
        group=OUTPUT,
        resume="free",
    )
    allow_config_change: tuple[str, ...] = option(
        default_factory=tuple,
        help="flags a resume may change, e.g. learning_rate,max_steps (num_processes for another process count): "
        "the new values apply from the checkpoint's step on, recorded in the logs and train_results.json",
        group=OUTPUT,
        resume="free",
    )
    allow_inexact_resume: bool = option(
        False,
        help="resume even when a checkpoint's optimizer, RNG or EMA state is missing, corrupt or refused (going "
        "without it, and saying so in the log and train_results.json)",
        group=OUTPUT,
        resume="free",
    )
    skip_nonfinite: bool = option(
        False,
        help="skip (and count) optimizer steps whose loss is NaN or infinite instead of stopping",
        group=OPTIMIZATION,
    )
    logger: str = option(
        "jsonl",
        help="jsonl (output_dir/logs/metrics.jsonl), tensorboard (output_dir/logs/) or none",
        group=PERIODIC,
        choices=LOGGERS,
        resume="free",
        aliases=("--report_to",),
    )
    log_steps: int = option(
        10, help="log the training loss every N steps", group=PERIODIC, check=POSITIVE_INT, resume="free"
    )
    seed: int = option(
        0, help="seeds the initialization, the data order and every other random draw", group=OPTIMIZATION, check=SEED
    )
    gradient_checkpointing: bool = option(
        False, help="recompute each block's activations in the backward pass (less memory)", group=MODEL
    )
    compile: bool = option(False, help="torch.compile the training step's model (inductor)", group=MODEL)
    compile_mode: str = option(
        "default",
        help="torch.compile's mode with --compile: default, reduce-overhead (CUDA graphs), max-autotune or "
        "max-autotune-no-cudagraphs",
        group=MODEL,
        choices=COMPILE_MODES,
    )
    push_to_hub: bool = option(
        False,
        help="upload the pipeline, its model card, train_results.json, the last sample grid and logs/ to the Hub "
        "after training (the repository is created, and the token checked, before the first step)",
        group=HUB,
        resume="free",
    )
    hub_model_id: str | None = option(
        None,
        help="the Hub repository of --push_to_hub: user/name or name (default: the output folder's name)",
        group=HUB,
        check=HUB_REPO_ID,
        resume="free",
    )
    hub_token: str | None = option(
        None,
        help="a Hub token for --push_to_hub and --init_from (default: HF_TOKEN or `hf auth login`'s); never "
        "written to checkpoints, logs or train_results.json",
        group=HUB,
        secret=True,
    )
    hub_private_repo: bool = option(
        False, help="create the --push_to_hub repository as private", group=HUB, resume="free"
    )

    def __post_init__(self) -> None:
        given = {n: getattr(self, n) for n in ("model", "model_config", "init_from") if getattr(self, n) is not None}
        if len(given) != 1:
            got = ", ".join(f"{n}={v!r}" for n, v in given.items()) or "none"
            raise ValueError(f"Expected exactly one of --model, --model_config or --init_from, got {got}.")
        check_options(self)
        if self.max_steps is not None and self.num_epochs is not None:
            raise ValueError(
                f"Expected one of --max_steps or --num_epochs, got max_steps={self.max_steps} and "
                f"num_epochs={self.num_epochs}."
            )
        self.allow_config_change = tuple(self.allow_config_change)
        changeable = resumable_flags()
        unknown = [name for name in self.allow_config_change if name not in changeable]
        if unknown:
            raise ValueError(
                f"Expected --allow_config_change to name flags a resume compares, among {changeable}, got {unknown}."
            )
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"Expected --compile with compile_mode={self.compile_mode!r}, got compile=False.")
        if self.sample_steps is not None and self.num_sample_images == 0:
            raise ValueError(f"Expected num_sample_images >= 1 with sample_steps={self.sample_steps}, got 0.")
        self.check_hub_options()

    def check_hub_options(self) -> None:
        """The Hub flags that only mean something with ``--push_to_hub`` are refused without it (never ignored)."""
        if not self.push_to_hub:
            given = [f"--{n}" for n in ("hub_model_id", "hub_private_repo") if getattr(self, n) not in (None, False)]
            if given:
                raise ValueError(f"Expected --push_to_hub with {' and '.join(given)}, got push_to_hub=False.")

    def total_steps(self, num_train_images: int, num_processes: int = 1) -> int:
        """The run's optimizer steps: ``max_steps``, or those of ``num_epochs`` over ``num_train_images``."""
        if self.num_epochs is None:
            return self.max_steps if self.max_steps is not None else DEFAULT_MAX_STEPS
        batches = num_train_images // (self.batch_size * num_processes)
        return max(1, math.ceil(self.num_epochs * batches / self.gradient_accumulation_steps))

    @property
    def model_name(self) -> str:
        """The model as the user named it: the registry name, the config file or the pipeline fine-tuned."""
        return next(name for name in (self.model, self.model_config, self.init_from) if name is not None)


def resumable_flags() -> list[str]:
    """The flags a resume must keep unless ``--allow_config_change`` names them (and ``num_processes``)."""
    from dataclasses import fields

    return [f.name for f in fields(TrainConfig) if option_info(f).resume == "match"] + ["num_processes"]


TrainConfig.__doc__ += "\n\n" + describe_options(TrainConfig)
