"""``pixelprior compress``: image files or a dataset split into one lossless stream coded with a saved prior."""

from __future__ import annotations

import argparse
import math
import os

from .arguments import positive_int
from .grids import add_grid_arguments, load_grids, load_prior


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compress`` subcommand to ``commands``; returns its parser."""
    compress = commands.add_parser(
        "compress",
        help="compress images losslessly with a saved prior",
        description="Code image files (of the prior's size, mode and levels, exactly as they are) or a dataset split "
        "into one stream of about -log2 p(x) bits; `pixelprior decompress` gives the images back.",
    )
    compress.add_argument("--pipeline", required=True, help="a pipeline folder written by `pixelprior train`")
    compress.add_argument("--output", required=True, help="the stream file to write")
    add_grid_arguments(compress)
    compress.add_argument("--batch_size", type=positive_int, default=100, help="images per batch (default: 100)")
    compress.add_argument("--no_cache", action="store_true", help="use the plain reference loop (slow)")
    compress.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    compress.set_defaults(handler=run)
    return compress


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ..compression import compress
    from ..scoring import log_prob_maps

    if os.path.exists(args.output) and not args.force:
        parser.error(f"argument --output: {args.output!r} exists; pass --force to overwrite it")
    pipe, prior = load_prior(parser, args.pipeline)
    grids = load_grids(args, parser, pipe, prior)
    data = compress(
        prior,
        grids.x,
        class_labels=grids.class_labels,
        names=grids.names,
        batch_size=args.batch_size,
        use_cache=not args.no_cache,
        progress=True,
    )
    ideal = float(-log_prob_maps(prior, grids.x, grids.class_labels, batch_size=args.batch_size).sum()) / math.log(2)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    partial = f"{args.output}.partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, args.output)  # a complete stream or none
    dims = grids.x[0].numel() * len(grids.x)
    print(
        f"Wrote {args.output}: {len(grids.x)} images in {len(data)} bytes, {8 * len(data) / dims:.4f} bits/dim "
        f"(the model's -log2 p(x): {ideal / dims:.4f} bits/dim, {ideal / 8:.0f} bytes)."
    )
