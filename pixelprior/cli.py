"""The ``pixelprior`` command: ``pixelprior train ...`` and ``pixelprior sample ...``.

Also ``python -m pixelprior ...`` and ``accelerate launch -m pixelprior train ...`` (the same code on one CPU,
several processes or several GPUs). Bad flags exit with status 2 and a one-line message saying what was expected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


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
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,sample}")

    train = commands.add_parser(
        "train",
        help="train a registered prior and save it as a pipeline folder",
        description="Train a registered prior with Accelerate; print train and test bits/dim; save a pipeline.",
    )
    train.add_argument(
        "--model", required=True, help="a registered prior, e.g. pixelcnn_mnist (see pixelprior.list_priors())"
    )
    train.add_argument("--model_kwargs", type=_json_object, default={}, help="JSON overrides of its configuration")
    train.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k, built in)")
    train.add_argument("--binarize", action="store_true", help="threshold images at 0.5 (needs a num_values=2 model)")
    train.add_argument("--output_dir", required=True, help="folder of the saved PixelPriorPipeline")
    train.add_argument("--max_steps", type=_positive_int, default=1000, help="optimizer steps (default: 1000)")
    train.add_argument(
        "--batch_size", type=_positive_int, default=32, help="images per step and process (default: 32)"
    )
    train.add_argument(
        "--learning_rate", type=_positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)"
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument(
        "--eval_batch_size", type=_positive_int, default=250, help="batch of the final evaluation (default: 250)"
    )
    train.set_defaults(handler=_train)

    sample = commands.add_parser(
        "sample",
        help="sample a PNG grid from a saved pipeline",
        description="Sample images from a saved PixelPriorPipeline folder and write them as one PNG grid.",
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
    return parser


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from .data import list_datasets
    from .models import list_priors
    from .training import TrainConfig, train

    if args.model not in list_priors():
        parser.error(f"argument --model: expected a registered prior, one of {list_priors()}, got {args.model!r}")
    if args.dataset not in list_datasets():
        parser.error(f"argument --dataset: expected one of {list_datasets()}, got {args.dataset!r}")
    config = TrainConfig(
        model=args.model,
        model_kwargs=args.model_kwargs,
        dataset=args.dataset,
        binarize=args.binarize,
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        eval_batch_size=args.eval_batch_size,
    )
    train(config)


def _sample(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import os

    import torch
    from diffusers.utils import logging as diffusers_logging

    from .pipelines import PixelPriorPipeline, make_image_grid

    if not os.path.isfile(os.path.join(args.pipeline, "model_index.json")):
        parser.error(f"argument --pipeline: expected a folder with a model_index.json, got {args.pipeline!r}")
    if not args.output.lower().endswith(".png"):
        parser.error(f"argument --output: expected a .png file name, got {args.output!r}")
    diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar; the sampler keeps its own
    pipe = PixelPriorPipeline.from_pretrained(args.pipeline)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pixelprior`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args, parser)
    except ValueError as error:
        # Boundary checks raise ValueError with what was expected and what was got: show it as a usage error.
        print(f"pixelprior {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
