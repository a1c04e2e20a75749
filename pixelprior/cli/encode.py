"""``pixelprior encode``: VQ-VAE code grids of an image dataset, for ``--dataset codes:FILE``."""

from __future__ import annotations

import argparse

from .arguments import positive_int


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``encode`` subcommand to ``commands``; returns its parser."""
    encode = commands.add_parser(
        "encode",
        help="encode an image dataset into VQ-VAE code grids (a codes:FILE dataset)",
        description="Encode every split of an image dataset with a diffusers VQModel into one safetensors file of "
        "integer code grids; train a prior on it with `pixelprior train --dataset codes:FILE`.",
    )
    encode.add_argument("--vqvae", required=True, help="VQModel folder (save_pretrained), pipeline folder or Hub id")
    encode.add_argument("--dataset", default="mnist5k", help="image dataset name (default: mnist5k, built in)")
    encode.add_argument("--output", required=True, help="the .safetensors file to write")
    encode.add_argument("--batch_size", type=positive_int, default=256, help="images per batch (default: 256)")
    encode.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    encode.set_defaults(handler=run)
    return encode


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ..data.encode import encode_to_file
    from ..paths import check_writable_file
    from ..vqmodel import load_vqmodel_config

    if not args.output.endswith(".safetensors"):
        parser.error(f"argument --output: expected a .safetensors file name, got {args.output!r}")
    check_writable_file(args.output, "--output")  # before encoding, not after
    load_vqmodel_config(args.vqvae)  # a missing or wrong --vqvae before any work: one line naming it
    meta = encode_to_file(args.vqvae, args.dataset, args.output, batch_size=args.batch_size, device=args.device)
    print(
        f"Wrote {args.output}: {meta['splits']} of {meta['dataset']} as {meta['latent_size']} grids of "
        f"{meta['num_values']} codes (VQModel {meta['vqvae_path']})."
    )
