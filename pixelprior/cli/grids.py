"""What ``pixelprior compress`` and ``pixelprior score`` share: a saved pipeline's prior, and the grids to code or
score, from image files (exactly as they are) or a dataset split (quantized as the prior's values require)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Grids:
    """The grids a command works on.

    Attributes:
        x: ``(N, C, H, W)`` long.
        class_labels: ``(N,)`` long for a class-conditional prior, else ``None``.
        names: one file name per grid (``STEM.png`` of each image file), or ``None`` for a dataset (whose images are
            numbered: ``00000.png``, ...; not storing numbers keeps them out of the stream).
    """

    x: torch.Tensor
    class_labels: torch.Tensor | None
    names: tuple[str, ...] | None


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs: ``IMAGES...`` or ``--dataset SPEC --split S``, and class labels for a class-conditional prior."""
    parser.add_argument("images", nargs="*", metavar="IMAGES", help="image files of the prior's size and mode")
    parser.add_argument(
        "--dataset", default=None, help="instead of IMAGES: a dataset spec (mnist5k, digits, a folder, hf:NAME, ...)"
    )
    parser.add_argument("--split", default="test", choices=("train", "test"), help="with --dataset (default: test)")
    parser.add_argument(
        "--class_labels",
        type=int,
        nargs="+",
        default=None,
        help="with IMAGES and a class-conditional prior: one label for all images, or one per image",
    )


def load_prior(parser: argparse.ArgumentParser, path: str, flag: str = "--pipeline"):
    """The prior of a saved pipeline folder (a ``PixelPriorPipeline`` or ``VQPriorPipeline``), in eval mode."""
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        parser.error(f"argument {flag}: expected a folder with a model_index.json, got {path!r}")
    from diffusers.utils import logging as diffusers_logging

    from ..pipelines import load_pipeline

    diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar
    pipe = load_pipeline(path)
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    return pipe, pipe.prior.eval()


def dataset_options(num_values: int) -> dict:
    """How a dataset of 8-bit images becomes the prior's values: binarized at 0.5, the top n bits, or as it is."""
    if num_values == 2:
        return {"binarize": True}
    bits = int(math.log2(num_values))
    if 2**bits == num_values and bits < 8:
        return {"num_bits": bits}
    return {}


def load_grids(args: argparse.Namespace, parser: argparse.ArgumentParser, pipe, prior) -> Grids:
    """The grids of ``IMAGES`` or ``--dataset``, checked against the prior; errors name the image at fault."""
    if bool(args.images) == (args.dataset is not None):
        parser.error("expected image files or --dataset SPEC, not both and not neither")
    if args.dataset is not None:
        return _dataset_grids(args, parser, prior)
    if type(pipe).__name__ == "VQPriorPipeline":
        raise ValueError(
            "Expected a PixelPriorPipeline for image files, got a VQPriorPipeline: its prior models VQ codes, which "
            "are not the images' pixels; pass --dataset codes:FILE for code grids."
        )
    if prior.in_channels not in (1, 3) or prior.num_values > 256:
        raise ValueError(
            f"Expected a prior over gray or RGB pixels for image files, got one over {prior.in_channels} channels of "
            f"{prior.num_values} values."
        )
    from ..compression.pixels import read_image_grid

    stems: dict[str, str] = {}
    for path in args.images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise ValueError(f"Expected image files with distinct names, got {stems[stem]!r} and {path!r}.")
        stems[stem] = path
    x = torch.stack([read_image_grid(p, prior.num_values, prior.in_channels, prior.grid_size) for p in args.images])
    names = tuple(f"{stem}.png" for stem in stems)
    return Grids(x, _image_labels(args.class_labels, len(x), prior), names)


def _image_labels(labels: Sequence[int] | None, count: int, prior) -> torch.Tensor | None:
    if prior.num_classes is None:
        if labels is not None:
            raise ValueError("Expected no --class_labels: this prior is not class-conditional.")
        return None
    if labels is None or len(labels) not in (1, count):
        got = "none" if labels is None else f"{len(labels)}"
        raise ValueError(
            f"Expected --class_labels (one for all images, or one per image: {count}) for this class-conditional "
            f"prior of {prior.num_classes} classes, got {got}."
        )
    return torch.tensor(list(labels) * (count if len(labels) == 1 else 1), dtype=torch.long)


def _dataset_grids(args: argparse.Namespace, parser: argparse.ArgumentParser, prior) -> Grids:
    from ..data import load_dataset, parse_dataset

    if args.class_labels is not None:
        parser.error("argument --class_labels: expected with IMAGES only (a dataset has its own labels)")
    pixels = parse_dataset(args.dataset).kind != "codes"
    data = load_dataset(args.dataset, args.split, **(dataset_options(prior.num_values) if pixels else {}))
    got, want = (
        (data.in_channels, *data.sample_size, data.num_values),
        (
            prior.in_channels,
            *prior.grid_size,
            prior.num_values,
        ),
    )
    if got != want:
        raise ValueError(
            f"Expected {args.dataset!r} grids of the prior's shape {want[:3]} and {want[3]} values, got {got[:3]} and "
            f"{got[3]} values."
        )
    labels = None
    if prior.num_classes is not None:
        if data.labels is None:
            raise ValueError(f"Expected labelled data for this class-conditional prior, got {args.dataset!r} without.")
        labels = data.labels
    return Grids(data.x.long(), labels, None)
