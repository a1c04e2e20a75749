"""``pixelprior score``: bits/dim of each image under a saved prior (CSV), per-pixel heatmaps, and with a background
prior the likelihood ratio; the input-complexity score always (see :mod:`pixelprior.scoring`)."""

from __future__ import annotations

import argparse
import csv
import math
import os

from .arguments import positive_float, positive_int
from .grids import add_grid_arguments, load_grids, load_prior


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``score`` subcommand to ``commands``; returns its parser."""
    score = commands.add_parser(
        "score",
        help="score images with a saved prior: bits/dim, heatmaps, out-of-distribution scores",
        description="Write one CSV row per image: name, bits/dim and nats under the prior, an optimized PNG's "
        "bits/dim and the input-complexity score (bits/dim minus PNG's, Serra et al. 2020); with --background, the "
        "background prior's bits/dim and the likelihood ratio log p(x) - log p_bg(x) in nats (Ren et al. 2019).",
    )
    score.add_argument("--pipeline", required=True, help="folder written by `pixelprior train` (or save_pretrained)")
    add_grid_arguments(score)
    score.add_argument("--output", required=True, help="the CSV file to write")
    score.add_argument("--heatmaps", default=None, help="a folder for one PNG per image: the image beside its bits")
    score.add_argument(
        "--heatmap_max",
        type=positive_float,
        default=None,
        help="the bits per pixel shown white in heatmaps (default: C log2(num_values), a uniform guess)",
    )
    score.add_argument("--scale", type=positive_int, default=4, help="heatmap magnification (default: 4)")
    score.add_argument("--background", default=None, help="a background prior's pipeline folder (likelihood ratio)")
    score.add_argument("--batch_size", type=positive_int, default=256, help="images per forward (default: 256)")
    score.set_defaults(handler=run)
    return score


FIELDS = ("name", "bits_per_dim", "nats", "png_bits_per_dim", "input_complexity")
BACKGROUND_FIELDS = ("background_bits_per_dim", "likelihood_ratio")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ..scoring import heatmap, score

    if not args.output.lower().endswith(".csv"):
        parser.error(f"argument --output: expected a .csv file name, got {args.output!r}")
    pipe, prior = load_prior(parser, args.pipeline)
    background = None if args.background is None else load_prior(parser, args.background, "--background")[1]
    grids = load_grids(args, parser, pipe, prior)
    scores = score(prior, grids.x, class_labels=grids.class_labels, background=background, batch_size=args.batch_size)
    names = grids.names or tuple(f"{index:05d}.png" for index in range(len(grids.x)))
    fields = FIELDS + (BACKGROUND_FIELDS if background is not None else ())
    columns = [scores.bits_per_dim, scores.nats, scores.png_bits_per_dim, scores.input_complexity]
    if background is not None:
        columns += [scores.background_bits_per_dim, scores.likelihood_ratio]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(fields)
        for index, name in enumerate(names):
            writer.writerow([name] + [f"{float(column[index]):.6f}" for column in columns])
    if args.heatmaps is not None:
        os.makedirs(args.heatmaps, exist_ok=True)
        vmax = args.heatmap_max or prior.in_channels * math.log2(prior.num_values)
        for name, grid, bits in zip(names, grids.x, scores.pixel_bits, strict=True):
            heatmap(grid, bits, prior.num_values, vmax, args.scale).save(os.path.join(args.heatmaps, name))
    mean = float(scores.bits_per_dim.mean())
    where = f" and {len(names)} heatmaps in {args.heatmaps}" if args.heatmaps else ""
    print(f"Scored {len(names)} images (mean {mean:.4f} bits/dim): {args.output}{where}.")
