"""The ``pixelprior`` command: one module per subcommand (``pixelprior train``, ``sample``, ``encode``, ``compress``,
``decompress``, ``score``).

Also ``python -m pixelprior ...`` and ``accelerate launch -m pixelprior train ...`` (the same code on one CPU,
several processes or several GPUs). Each subcommand module has ``add_parser(commands)``, which adds its flags and
sets its ``run(args, parser)`` as the handler; a new subcommand is a new module listed in ``COMMANDS``. Bad flags
exit with status 2 and a one-line message saying what was expected; so does a ``ValueError`` from the library
(boundary checks say what was expected and what was got).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import compress, decompress, encode, sample, score, train

COMMANDS = (train, sample, encode, compress, decompress, score)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixelprior`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="pixelprior", description="Autoregressive image priors: train them, sample from them."
    )
    names = ",".join(module.__name__.rsplit(".", 1)[-1] for module in COMMANDS)
    commands = parser.add_subparsers(dest="command", required=True, metavar=f"{{{names}}}")
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


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
