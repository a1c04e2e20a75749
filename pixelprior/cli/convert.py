"""``pixelprior convert FORMAT SOURCE --output_dir DIR``: another project's checkpoint as a pipeline folder.

Formats (:mod:`pixelprior.converters`): ``imagegpt`` (transformers' Image GPT: a folder or a Hub id such as
``openai/imagegpt-small``) and ``pixelcnn-pp`` (a pclucas14/pixel-cnn-pp state dict). ``DIR`` must be new or empty:
nothing is overwritten, and the folder appears only once complete.
"""

from __future__ import annotations

import argparse

import torch

from .arguments import checked, positive_int

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
dropout_type = checked(float, lambda value: 0 <= value < 1, "a dropout probability in [0, 1)")


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand (with one sub-subcommand per format) to ``commands``; returns its parser."""
    convert = commands.add_parser(
        "convert",
        help="convert a checkpoint of another project (Image GPT, the PixelCNN++ port) into a pipeline folder",
        description="Convert another project's checkpoint into a PixelPriorPipeline folder (safetensors only) whose "
        "log-likelihood equals the source model's. Weight files are read with safetensors or "
        "torch.load(weights_only=True): nothing in them runs.",
    )
    formats = convert.add_subparsers(dest="format", required=True, metavar="{imagegpt,pixelcnn-pp}")

    igpt = formats.add_parser(
        "imagegpt",
        help="transformers' Image GPT (a folder or a Hub id such as openai/imagegpt-small)",
        description="Convert a transformers ImageGPTForCausalImageModeling (config.json, model.safetensors or "
        "pytorch_model.bin, preprocessor_config.json with the colour clusters) into a pipeline that samples RGB "
        "images through the clusters.",
    )
    igpt.add_argument("source", help="a transformers Image GPT folder, or a Hub repository id")
    igpt.add_argument("--no_palette", action="store_true", help="convert the model without the colour clusters")
    igpt.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of a repository id")
    igpt.add_argument("--cache_dir", default=None, help="Hugging Face cache folder for a repository id")
    igpt.add_argument("--local_files_only", action="store_true", help="read a repository id from the cache only")

    port = formats.add_parser(
        "pixelcnn-pp",
        help="a state dict of pclucas14/pixel-cnn-pp (the PyTorch port of PixelCNN++)",
        description="Convert a pclucas14/pixel-cnn-pp state dict (.pth, with or without DataParallel's 'module.' "
        "prefix); its sizes (resnets per stage, filters, mixtures, channels) are read from the tensors.",
    )
    port.add_argument("source", help="the .pth state dict (or a .safetensors copy)")

    for parser, default in ((igpt, "the square of n_positions"), (port, "32")):
        parser.add_argument("--output_dir", required=True, help="the pipeline folder to write (new or empty)")
        parser.add_argument(
            "--sample_size", type=positive_int, nargs="+", default=None, help=f"H [W]: the grid (default: {default})"
        )
        parser.add_argument(
            "--dropout", type=dropout_type, default=None, help="the converted model's dropout (default: the source's)"
        )
        parser.add_argument(
            "--dtype", choices=sorted(DTYPES), default=None, help="the saved weights' dtype (default: the source's)"
        )
        parser.set_defaults(handler=run)
    return convert


def _sample_size(values: list[int] | None, parser: argparse.ArgumentParser) -> int | tuple[int, int] | None:
    if values is None:
        return None
    if len(values) > 2:
        parser.error(f"argument --sample_size: expected H or H W, got {len(values)} numbers")
    return values[0] if len(values) == 1 else (values[0], values[1])


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ..converters import convert_imagegpt, convert_pixelcnn_pp, write_pipeline
    from ..converters.checkpoints import check_output_dir

    check_output_dir(args.output_dir)  # before the work: a conversion never ends in a refusal to save
    sample_size = _sample_size(args.sample_size, parser)
    dtype = DTYPES[args.dtype] if args.dtype else None
    if args.format == "imagegpt":
        pipe = convert_imagegpt(
            args.source,
            sample_size=sample_size,
            dropout=args.dropout,
            palette=not args.no_palette,
            dtype=dtype,
            cache_dir=args.cache_dir,
            revision=args.revision,
            local_files_only=args.local_files_only,
        )
    else:
        extra = {"dropout": args.dropout} if args.dropout is not None else {}
        pipe = convert_pixelcnn_pp(args.source, sample_size=sample_size or 32, dtype=dtype, **extra)
    folder = write_pipeline(pipe, args.output_dir)
    prior = pipe.prior
    (H, W), parameters = prior.grid_size, sum(p.numel() for p in prior.parameters())
    palette = f", palette of {pipe.palette.num_colors} colours" if pipe.palette is not None else ""
    print(
        f"Converted {args.format} {args.source}: {type(prior).__name__} of {prior.in_channels}x{H}x{W} grids of "
        f"{prior.num_values} values, {parameters:,} parameters ({prior.dtype}){palette}."
    )
    print(f"Saved the pipeline to {folder} (PixelPriorPipeline.from_pretrained).")
