"""``pixelprior train``: train a prior with Accelerate and save it as a pipeline folder."""

from __future__ import annotations

import argparse
import sys

from ..training.config import COMPILE_MODES, LOGGERS, LR_SCHEDULES, MIXED_PRECISION
from .arguments import json_object, nonnegative_int, positive_float, positive_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand to ``commands``."""
    train = commands.add_parser(
        "train",
        help="train a prior and save it as a pipeline folder",
        description="Train a prior with Accelerate (1 CPU to many GPUs: accelerate launch -m pixelprior train ...); "
        "evaluate bits/dim, write sample grids, checkpoints and logs; save a pipeline folder.",
    )
    model = train.add_argument_group("model")
    model.add_argument("--model", default=None, help="a registered prior, e.g. pixelcnn_mnist (see list_priors())")
    model.add_argument(
        "--model_config",
        default=None,
        help="instead of --model: a prior's config.json (or its folder), or a JSON with _class_name and arguments",
    )
    model.add_argument("--model_kwargs", type=json_object, default={}, help="JSON overrides of its configuration")
    model.add_argument(
        "--gradient_checkpointing", action="store_true", help="recompute block activations in backward (less memory)"
    )
    model.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    model.add_argument(
        "--compile_mode",
        choices=COMPILE_MODES,
        default="default",
        help="torch.compile mode with --compile; reduce-overhead: CUDA graphs (default: default)",
    )
    data = train.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="mnist5k",
        help="mnist5k (built in), digits, an image folder, hf:NAME, torchvision:NAME or codes:FILE (default: mnist5k)",
    )
    data.add_argument("--binarize", action="store_true", help="threshold images at 0.5 (needs a num_values=2 model)")
    data.add_argument("--resolution", type=positive_int, default=None, help="resize images to this size")
    data.add_argument("--num_bits", type=positive_int, default=None, help="quantize images to 2**num_bits values")
    data.add_argument("--data_dir", default=None, help="root folder of torchvision: dataset files")
    data.add_argument("--max_train_samples", type=positive_int, default=None, help="train on the first N images")
    data.add_argument("--max_eval_samples", type=positive_int, default=None, help="evaluate the first N images")
    optim = train.add_argument_group("optimization")
    optim.add_argument("--output_dir", required=True, help="the run's folder: pipeline, checkpoints, samples, logs")
    optim.add_argument("--max_steps", type=positive_int, default=1000, help="optimizer steps (default: 1000)")
    optim.add_argument(
        "--batch_size", type=positive_int, default=32, help="images per micro-batch and process (default: 32)"
    )
    optim.add_argument(
        "--gradient_accumulation_steps", type=positive_int, default=1, help="micro-batches per step (default: 1)"
    )
    optim.add_argument("--learning_rate", type=positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    optim.add_argument(
        "--lr_schedule",
        choices=LR_SCHEDULES,
        default="exponential",
        help="exponential: lr * lr_decay**step (PixelCNN++, the default); constant; cosine to 0 at max_steps",
    )
    optim.add_argument(
        "--lr_decay", type=positive_float, default=0.999995, help="per-step decay (default: 0.999995, PixelCNN++)"
    )
    optim.add_argument("--lr_warmup_steps", type=nonnegative_int, default=0, help="linear warm-up (default: 0)")
    optim.add_argument("--max_grad_norm", type=positive_float, default=None, help="clip the gradient norm to this")
    optim.add_argument("--mixed_precision", choices=MIXED_PRECISION, default="no", help="autocast dtype")
    optim.add_argument("--use_ema", action="store_true", help="evaluate, sample and save a Polyak average")
    optim.add_argument("--ema_decay", type=float, default=0.9995, help="EMA decay per step (default: 0.9995)")
    optim.add_argument("--skip_nonfinite", action="store_true", help="skip and count steps with a NaN/inf loss")
    optim.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    every = train.add_argument_group("evaluation, samples, checkpoints, logs")
    every.add_argument("--eval_steps", type=positive_int, default=None, help="test bits/dim every N steps")
    every.add_argument(
        "--eval_batch_size", type=positive_int, default=250, help="evaluation batch per process (default: 250)"
    )
    every.add_argument("--sample_steps", type=positive_int, default=None, help="a PNG grid in DIR/samples every N")
    every.add_argument("--num_sample_images", type=positive_int, default=16, help="images per grid (default: 16)")
    every.add_argument("--checkpointing_steps", type=positive_int, default=None, help="DIR/checkpoint-N every N")
    every.add_argument("--checkpoints_total_limit", type=positive_int, default=None, help="keep the newest N")
    every.add_argument(
        "--resume_from_checkpoint", default=None, help="'latest' (newest in --output_dir) or a checkpoint folder"
    )
    every.add_argument("--logger", choices=LOGGERS, default="jsonl", help="DIR/logs (default: jsonl)")
    every.add_argument("--log_steps", type=positive_int, default=10, help="log the loss every N steps (default: 10)")
    train.set_defaults(handler=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from dataclasses import fields

    from ..models import list_priors
    from ..training import NonFiniteLossError, TrainConfig, train

    if (args.model is None) == (args.model_config is None):
        parser.error("expected one of --model or --model_config")
    if args.model is not None and args.model not in list_priors():
        parser.error(f"argument --model: expected a registered prior, one of {list_priors()}, got {args.model!r}")
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    try:
        train(config)
    except NonFiniteLossError as error:
        print(f"pixelprior train: error: {error}", file=sys.stderr)
        return 1
    return 0
