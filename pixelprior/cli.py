"""The ``pixelprior`` command: ``pixelprior train ...``, ``pixelprior sample ...`` and ``pixelprior encode ...``.

Also ``python -m pixelprior ...`` and ``accelerate launch -m pixelprior train ...`` (the same code on one CPU,
several processes or several GPUs). Bad flags exit with status 2 and a one-line message saying what was expected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .training.config import COMPILE_MODES, LOGGERS, LR_SCHEDULES, MIXED_PRECISION


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert(text)``, accepted when ``ok``; else "expected WHAT, got TEXT"."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _checked(int, lambda value: value >= 1, "a positive integer")
_positive_float = _checked(float, lambda value: value > 0, "a positive number")
_nonnegative_int = _checked(int, lambda value: value >= 0, "an integer >= 0")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"num_layers\": 2}}', got {text!r} ({error})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"num_layers\": 2}}', got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixelprior`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="pixelprior", description="Autoregressive image priors: train them, sample from them."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,encode}")

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
    model.add_argument("--model_kwargs", type=_json_object, default={}, help="JSON overrides of its configuration")
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
    data.add_argument("--resolution", type=_positive_int, default=None, help="resize images to this size")
    data.add_argument("--num_bits", type=_positive_int, default=None, help="quantize images to 2**num_bits values")
    data.add_argument("--data_dir", default=None, help="root folder of torchvision: dataset files")
    data.add_argument("--max_train_samples", type=_positive_int, default=None, help="train on the first N images")
    data.add_argument("--max_eval_samples", type=_positive_int, default=None, help="evaluate the first N images")
    optim = train.add_argument_group("optimization")
    optim.add_argument("--output_dir", required=True, help="the run's folder: pipeline, checkpoints, samples, logs")
    optim.add_argument("--max_steps", type=_positive_int, default=1000, help="optimizer steps (default: 1000)")
    optim.add_argument(
        "--batch_size", type=_positive_int, default=32, help="images per micro-batch and process (default: 32)"
    )
    optim.add_argument(
        "--gradient_accumulation_steps", type=_positive_int, default=1, help="micro-batches per step (default: 1)"
    )
    optim.add_argument(
        "--learning_rate", type=_positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)"
    )
    optim.add_argument(
        "--lr_schedule",
        choices=LR_SCHEDULES,
        default="exponential",
        help="exponential: lr * lr_decay**step (PixelCNN++, the default); constant; cosine to 0 at max_steps",
    )
    optim.add_argument(
        "--lr_decay", type=_positive_float, default=0.999995, help="per-step decay (default: 0.999995, PixelCNN++)"
    )
    optim.add_argument("--lr_warmup_steps", type=_nonnegative_int, default=0, help="linear warm-up (default: 0)")
    optim.add_argument("--max_grad_norm", type=_positive_float, default=None, help="clip the gradient norm to this")
    optim.add_argument("--mixed_precision", choices=MIXED_PRECISION, default="no", help="autocast dtype")
    optim.add_argument("--use_ema", action="store_true", help="evaluate, sample and save a Polyak average")
    optim.add_argument("--ema_decay", type=float, default=0.9995, help="EMA decay per step (default: 0.9995)")
    optim.add_argument("--skip_nonfinite", action="store_true", help="skip and count steps with a NaN/inf loss")
    optim.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    every = train.add_argument_group("evaluation, samples, checkpoints, logs")
    every.add_argument("--eval_steps", type=_positive_int, default=None, help="test bits/dim every N steps")
    every.add_argument(
        "--eval_batch_size", type=_positive_int, default=250, help="evaluation batch per process (default: 250)"
    )
    every.add_argument("--sample_steps", type=_positive_int, default=None, help="a PNG grid in DIR/samples every N")
    every.add_argument("--num_sample_images", type=_positive_int, default=16, help="images per grid (default: 16)")
    every.add_argument("--checkpointing_steps", type=_positive_int, default=None, help="DIR/checkpoint-N every N")
    every.add_argument("--checkpoints_total_limit", type=_positive_int, default=None, help="keep the newest N")
    every.add_argument(
        "--resume_from_checkpoint", default=None, help="'latest' (newest in --output_dir) or a checkpoint folder"
    )
    every.add_argument("--logger", choices=LOGGERS, default="jsonl", help="DIR/logs (default: jsonl)")
    every.add_argument("--log_steps", type=_positive_int, default=10, help="log the loss every N steps (default: 10)")
    train.set_defaults(handler=_train)

    sample = commands.add_parser(
        "sample",
        help="sample a PNG grid from a saved pipeline",
        description="Sample images from a saved PixelPriorPipeline or VQPriorPipeline folder; write one PNG grid.",
    )
    sample.add_argument("--pipeline", required=True, help="folder written by `pixelprior train` (or save_pretrained)")
    sample.add_argument("--batch_size", type=_positive_int, default=16, help="number of images (default: 16)")
    sample.add_argument("--output", required=True, help="the PNG file to write")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sample.add_argument("--temperature", type=_positive_float, default=1.0, help="divides the logits (default: 1)")
    sample.add_argument(
        "--class_labels",
        type=int,
        nargs="+",
        default=None,
        help="one label for all images, or one per image (class-conditional priors; default: 0, 1, 2, ... cycling)",
    )
    sample.add_argument("--cols", type=_positive_int, default=None, help="images per row (default: square grid)")
    sample.add_argument("--scale", type=_positive_int, default=1, help="magnify the grid by this factor (default: 1)")
    sample.add_argument("--no_cache", action="store_true", help="use the plain reference sampler (slow)")
    sample.set_defaults(handler=_sample)

    encode = commands.add_parser(
        "encode",
        help="encode an image dataset into VQ-VAE code grids (a codes:FILE dataset)",
        description="Encode every split of an image dataset with a diffusers VQModel into one safetensors file of "
        "integer code grids; train a prior on it with `pixelprior train --dataset codes:FILE`.",
    )
    encode.add_argument("--vqvae", required=True, help="VQModel folder (save_pretrained), pipeline folder or Hub id")
    encode.add_argument("--dataset", default="mnist5k", help="image dataset name (default: mnist5k, built in)")
    encode.add_argument("--output", required=True, help="the .safetensors file to write")
    encode.add_argument("--batch_size", type=_positive_int, default=256, help="images per batch (default: 256)")
    encode.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    encode.set_defaults(handler=_encode)
    return parser


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from dataclasses import fields

    from .models import list_priors
    from .training import NonFiniteLossError, TrainConfig, train

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


def _sample(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import os

    import torch
    from diffusers.utils import logging as diffusers_logging

    from .pipelines import load_pipeline, make_image_grid

    if not os.path.isfile(os.path.join(args.pipeline, "model_index.json")):
        parser.error(f"argument --pipeline: expected a folder with a model_index.json, got {args.pipeline!r}")
    if not args.output.lower().endswith(".png"):
        parser.error(f"argument --output: expected a .png file name, got {args.output!r}")
    diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar; the sampler keeps its own
    pipe = load_pipeline(args.pipeline)  # a PixelPriorPipeline or a VQPriorPipeline
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    class_labels = args.class_labels
    if pipe.prior.num_classes is not None and class_labels is None:
        class_labels = [k % pipe.prior.num_classes for k in range(args.batch_size)]
    elif class_labels is not None and len(class_labels) == 1:
        class_labels = class_labels[0]
    images = pipe(
        batch_size=args.batch_size,
        class_labels=class_labels,
        generator=torch.Generator().manual_seed(args.seed),
        temperature=args.temperature,
        use_cache=not args.no_cache,
        progress=True,
    ).images
    grid = make_image_grid(images, cols=args.cols, scale=args.scale)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    grid.save(args.output)
    print(f"Wrote {len(images)} samples to {args.output} ({grid.width}x{grid.height}).")


def _encode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from .data.codes import encode_to_file

    if not args.output.endswith(".safetensors"):
        parser.error(f"argument --output: expected a .safetensors file name, got {args.output!r}")
    meta = encode_to_file(args.vqvae, args.dataset, args.output, batch_size=args.batch_size, device=args.device)
    print(
        f"Wrote {args.output}: {meta['splits']} of {meta['dataset']} as {meta['latent_size']} grids of "
        f"{meta['num_values']} codes (VQModel {meta['vqvae_path']})."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pixelprior`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args, parser)
    except ValueError as error:
        # Boundary checks raise ValueError with what was expected and what was got: show it as a usage error.
        print(f"pixelprior {args.command}: error: {error}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
