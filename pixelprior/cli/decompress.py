"""``pixelprior decompress``: a stream written by ``pixelprior compress`` back into PNGs with the original names."""

from __future__ import annotations

import argparse
import os

from .grids import load_prior


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``decompress`` subcommand to ``commands``; returns its parser."""
    decompress = commands.add_parser(
        "decompress",
        help="decompress a stream of `pixelprior compress` into PNGs",
        description="Decode a stream with the prior it was coded with; write one PNG per image, with the original "
        "names, pixel for pixel the images that were compressed.",
    )
    decompress.add_argument("--pipeline", required=True, help="the pipeline folder the stream was compressed with")
    decompress.add_argument("--output_dir", required=True, help="the folder to write the PNGs into")
    decompress.add_argument("file", metavar="FILE", help="the stream written by `pixelprior compress`")
    decompress.add_argument("--force", action="store_true", help="overwrite PNGs that exist in --output_dir")
    decompress.set_defaults(handler=run)
    return decompress


def _check_names(names: tuple[str, ...] | None, count: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"{index:05d}.png" for index in range(count))
    for name in names:
        if os.path.basename(name) != name or name in (".", "..") or "\0" in name or not name.endswith(".png"):
            raise ValueError(f"Expected plain PNG file names in the stream, got {name!r}.")
    if len(set(names)) != len(names):
        raise ValueError("Expected distinct file names in the stream, got repeated ones.")
    return names


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ..compression import decode, unpack
    from ..compression.pixels import grid_to_image

    if not os.path.isfile(args.file):
        parser.error(f"argument FILE: expected a stream file, got {args.file!r}")
    with open(args.file, "rb") as file:
        data = file.read()
    header = unpack(data)[0]
    N, C = header.shape[:2]
    if C not in (1, 3) or header.num_values > 256:
        raise ValueError(
            f"Expected a stream of gray or RGB images, got grids of {C} channels and {header.num_values} values "
            "(decode them with pixelprior.compression.decompress)."
        )
    names = _check_names(header.names, N)
    existing = [n for n in names if os.path.exists(os.path.join(args.output_dir, n))]
    if existing and not args.force:
        parser.error(f"argument --output_dir: {existing[0]!r} exists there ({len(existing)} files); pass --force")
    _, prior = load_prior(parser, args.pipeline)
    stream = decode(prior, data, progress=True)
    os.makedirs(args.output_dir, exist_ok=True)
    for name, grid in zip(names, stream.x, strict=True):
        grid_to_image(grid, header.num_values).save(os.path.join(args.output_dir, name), format="PNG")
    print(f"Wrote {N} PNGs to {args.output_dir} (checksum verified).")
