"""The ``pixelprior`` command: one module per subcommand (``pixelprior train``, ``sample``, ``encode``, ``convert``,
``compress``, ``decompress``, ``score``).

Also ``python -m pixelprior ...`` and ``accelerate launch -m pixelprior train ...`` (the same code on one CPU,
several processes or several GPUs). Each subcommand module has ``add_parser(commands)``, which adds its flags, sets
its ``run(args, parser)`` as the handler and returns its parser; a new subcommand is a new module listed in
``COMMANDS``. Every error is one line, ``pixelprior COMMAND: error: ...``: bad flags and a ``ValueError`` from the
library (boundary checks say what was expected and what was got) exit with status 2; a file that could not be
written during the work (``OSError``: a full disk) with status 1, as a non-finite training run does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import compress, convert, decompress, encode, sample, score, train

COMMANDS = (train, sample, encode, convert, compress, decompress, score)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE`` (no usage block), status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixelprior`` command and its subcommands."""
    from .. import __version__

    parser = OneLineParser(prog="pixelprior", description="Autoregressive image priors: train them, sample from them.")
    parser.add_argument("--version", action="version", version=f"pixelprior {__version__}")
    names = ",".join(module.__name__.rsplit(".", 1)[-1] for module in COMMANDS)
    commands = parser.add_subparsers(dest="command", required=True, metavar=f"{{{names}}}")
    parsers = {}
    for module in COMMANDS:
        command = module.add_parser(commands)
        parsers[command.prog.rsplit(" ", 1)[-1]] = command
    parser.set_defaults(command_parsers=parsers)
    return parser


def one_line(error: BaseException) -> str:
    """An error's message on one line (a library's message may span several, as huggingface_hub's do)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pixelprior`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command_parser = args.command_parsers[args.command]
    try:
        status = args.handler(args, command_parser)
    except ValueError as error:
        # Boundary checks raise ValueError with what was expected and what was got: show it as a usage error.
        print(f"pixelprior {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a write that failed during the work (a full disk): one line naming the path
        print(f"pixelprior {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
