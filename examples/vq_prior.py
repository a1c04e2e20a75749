"""A prior over VQ-VAE codes, end to end: encode the digits, train a prior on the codes, sample through the VQ-VAE.

1. Encode ``mnist5k`` (both splits) with the VQModel of ``examples/train_vqvae.py`` into one safetensors file of
   integer code grids (what ``pixelprior encode`` does).
2. Train a class-conditional prior (Gated PixelCNN by default, or PixelSNAIL) on the 7x7 grids of codes with the
   library's training loop (what ``pixelprior train --dataset codes:FILE`` does); the saved folder is a
   ``VQPriorPipeline`` (prior + VQModel).
3. Load it back and sample one row per digit class through ``VQPriorPipeline``; write a PNG grid.

Usage (after ``python examples/train_vqvae.py --output_dir runs/vqvae``; about 6 minutes of CPU time):
    python examples/vq_prior.py --vqvae runs/vqvae --output_dir runs/vq_prior
    python examples/vq_prior.py --vqvae /tmp/vqvae --output_dir /tmp/vq --max_steps 2 --hidden_channels 8  # smoke

The same from the command line:
    pixelprior encode --vqvae runs/vqvae --dataset mnist5k --output runs/codes.safetensors
    pixelprior train --model gated_pixelcnn_mnist --dataset codes:runs/codes.safetensors --output_dir runs/vq_prior \\
        --model_kwargs '{"sample_size": [7, 7], "num_values": 32, "num_classes": 10}'
    pixelprior sample --pipeline runs/vq_prior --output samples.png --batch_size 40 --scale 2
"""

from __future__ import annotations

import argparse
import os

import torch

from pixelprior import VQPriorPipeline
from pixelprior.data import codes_metadata, encode_to_file
from pixelprior.pipelines import make_image_grid
from pixelprior.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", default="runs/vqvae", help="VQModel folder written by examples/train_vqvae.py")
    parser.add_argument("--output_dir", default="runs/vq_prior", help="the VQPriorPipeline folder to write")
    parser.add_argument("--model", default="gated_pixelcnn_mnist", choices=["gated_pixelcnn_mnist", "pixelsnail"])
    parser.add_argument("--max_steps", type=int, default=1500)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--hidden_channels", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=6)
    parser.add_argument("--per_class", type=int, default=8, help="samples per digit class")
    parser.add_argument("--output", default=None, help="the PNG grid (default: OUTPUT_DIR/samples.png)")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="evaluate on fewer images (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # 1. Codes: (N, 1, 7, 7) grids in [0, K) with the digit labels, and the VQModel's identity.
    codes_path = os.path.join(args.output_dir + "_codes", "codes.safetensors")
    encode_to_file(args.vqvae, "mnist5k", codes_path, batch_size=250)
    meta = codes_metadata(codes_path)
    print(f"Encoded mnist5k into {meta['latent_size']} grids of {meta['num_values']} codes: {codes_path}")

    # 2. A class-conditional prior over the codes; the trained folder is a VQPriorPipeline.
    model = "pixelsnail_vqvae2_top" if args.model == "pixelsnail" else args.model
    model_kwargs = {
        "sample_size": meta["latent_size"],
        "in_channels": 1,
        "num_values": meta["num_values"],
        "num_classes": meta["num_classes"],
        "hidden_channels": args.hidden_channels,
        "num_layers": args.num_layers,
    }
    if args.model == "pixelsnail":  # the VQ-VAE-2 top prior's layout, scaled down to CPU size
        model_kwargs.update(
            residual_channels=2 * args.hidden_channels,
            num_layers=max(1, args.num_layers // 3),  # attention blocks, each of num_res_blocks residual blocks
            num_res_blocks=2,
            kernel_size=3,
            num_heads=2,
            key_channels=16,
            value_channels=args.hidden_channels,
            num_output_blocks=0,
            dropout=0.0,
        )
    config = TrainConfig(
        model=model,
        model_kwargs=model_kwargs,
        dataset=f"codes:{codes_path}",
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        max_eval_samples=args.max_eval_samples,
    )
    result = train(config)
    print(
        f"Prior over codes: test {result.test_bits_per_dim:.3f} bits per code (train {result.train_bits_per_dim:.3f})"
    )

    # 3. Sample one row per digit through the VQ-VAE decoder.
    pipe = VQPriorPipeline.from_pretrained(args.output_dir)
    labels = torch.arange(meta["num_classes"]).repeat_interleave(args.per_class)
    generator = torch.Generator().manual_seed(args.seed)
    images = pipe(batch_size=len(labels), class_labels=labels, generator=generator).images
    grid = make_image_grid(images, cols=args.per_class, scale=2)
    path = args.output or os.path.join(args.output_dir, "samples.png")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grid.save(path)
    print(f"Wrote {path}: one row of VQ-VAE samples per digit 0-{meta['num_classes'] - 1}.")


if __name__ == "__main__":
    main()
