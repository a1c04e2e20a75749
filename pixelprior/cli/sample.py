"""``pixelprior sample``: a PNG grid of samples from a saved pipeline folder."""

from __future__ import annotations

import argparse

from .arguments import positive_float, positive_int


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``sample`` subcommand to ``commands``; returns its parser."""
    sample = commands.add_parser(
        "sample",
        help="sample a PNG grid from a saved pipeline",
        description="Sample images from a saved PixelPriorPipeline or VQPriorPipeline folder; write one PNG grid.",
    )
    sample.add_argument("--pipeline", required=True, help="folder written by `pixelprior train` (or save_pretrained)")
    sample.add_argument("--batch_size", type=positive_int, default=None, help="number of images (default: 16)")
    sample.add_argument("--output", required=True, help="the PNG file to write")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sample.add_argument("--temperature", type=positive_float, default=1.0, help="divides the logits (default: 1)")
    sample.add_argument(
        "--class_labels",
        type=int,
        nargs="+",
        default=None,
        help="one label for all images, or one per image (class-conditional priors; default: 0, 1, 2, ... cycling)",
    )
    sample.add_argument(
        "--per_class",
        type=positive_int,
        default=None,
        metavar="N",
        help="class-conditional priors: N samples of each class 0..K-1, one row per class (instead of --batch_size, "
        "--class_labels and --cols)",
    )
    sample.add_argument("--cols", type=positive_int, default=None, help="images per row (default: square grid)")
    sample.add_argument("--scale", type=positive_int, default=1, help="magnify the grid by this factor (default: 1)")
    sample.add_argument("--no_cache", action="store_true", help="use the plain reference sampler (slow)")
    sample.set_defaults(handler=run)
    return sample


def _layout(
    args: argparse.Namespace, num_classes: int | None, parser: argparse.ArgumentParser
) -> tuple[int, list[int] | int | None, int | None]:
    """The batch size, the class labels and the images per row of the grid: ``--per_class N`` draws N of each
    class (row ``k`` is class ``k``); otherwise ``--class_labels`` (one for all, or one per image) or labels
    ``0, 1, 2, ...`` cycling for a class-conditional prior."""
    if args.per_class is not None:
        if num_classes is None:
            parser.error("argument --per_class: expected a class-conditional pipeline, got an unconditional prior")
        labels = [k for k in range(num_classes) for _ in range(args.per_class)]
        return len(labels), labels, args.per_class
    batch_size, class_labels = args.batch_size or 16, args.class_labels
    if num_classes is not None and class_labels is None:
        class_labels = [k % num_classes for k in range(batch_size)]
    elif class_labels is not None and len(class_labels) == 1:
        class_labels = class_labels[0]
    return batch_size, class_labels, args.cols


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import os

    import torch
    from diffusers.utils import logging as diffusers_logging

    from ..paths import check_writable_file
    from ..pipelines import load_pipeline, make_image_grid
    from ..training.run_folder import replace_atomically, writing

    if not os.path.isfile(os.path.join(args.pipeline, "model_index.json")):
        parser.error(f"argument --pipeline: expected a folder with a model_index.json, got {args.pipeline!r}")
    if not args.output.lower().endswith(".png"):
        parser.error(f"argument --output: expected a .png file name, got {args.output!r}")
    check_writable_file(args.output, "--output")  # before sampling, not after
    diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar; the sampler keeps its own
    if args.per_class is not None:
        given = [f"--{n}" for n in ("batch_size", "class_labels", "cols") if getattr(args, n) is not None]
        if given:
            parser.error(f"argument --per_class: expected no {' or '.join(given)} with it (it sets them)")
    pipe = load_pipeline(args.pipeline)  # a PixelPriorPipeline or a VQPriorPipeline
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    batch_size, class_labels, cols = _layout(args, pipe.prior.num_classes, parser)
    images = pipe(
        batch_size=batch_size,
        class_labels=class_labels,
        generator=torch.Generator().manual_seed(args.seed),
        temperature=args.temperature,
        use_cache=not args.no_cache,
        progress=True,
    ).images
    grid = make_image_grid(images, cols=cols, scale=args.scale)
    with writing(args.output, "the sample grid"), replace_atomically(args.output) as tmp:
        grid.save(tmp, format="PNG")
    print(f"Wrote {len(images)} samples to {args.output} ({grid.width}x{grid.height}).")
