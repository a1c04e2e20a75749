"""``pixelprior train``: train a prior with Accelerate and save it as a pipeline folder.

Every flag is a field of :class:`~pixelprior.training.TrainConfig` (its type, default, check and help come from
there: :func:`~pixelprior.cli.arguments.add_options`).
"""

from __future__ import annotations

import argparse
import sys

from ..training.config import DATA, MODEL, OPTIMIZATION, OUTPUT, PERIODIC, TrainConfig
from .arguments import add_options


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``commands``; returns its parser."""
    train = commands.add_parser(
        "train",
        help="train a prior and save it as a pipeline folder",
        description="Train a prior with Accelerate (1 CPU to many GPUs: accelerate launch -m pixelprior train ...); "
        "evaluate bits/dim, write sample grids, checkpoints and logs; save a pipeline folder.",
    )
    add_options(train, TrainConfig, order=(MODEL, DATA, OPTIMIZATION, PERIODIC, OUTPUT))
    train.set_defaults(handler=run)
    return train


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The :class:`TrainConfig` of parsed flags; a check that spans several flags fails as a usage error."""
    from dataclasses import fields

    try:
        return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    except ValueError as error:
        parser.error(" ".join(str(error).split("\n")))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..training import NonFiniteLossError, train

    config = config_from_args(args, parser)
    try:
        train(config)
    except NonFiniteLossError as error:
        from . import one_line

        print(f"pixelprior train: error: {one_line(error)}", file=sys.stderr)
        return 1
    return 0
