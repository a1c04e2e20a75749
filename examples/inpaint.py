"""Inpainting with a pixel-space prior: hide the bottom half of test digits and let the prior complete them.

Uses ``PixelPriorPipeline(image=..., mask_image=...)`` exactly as diffusers' inpainting pipelines take them: PIL
images, the mask white where pixels are regenerated and black where they are kept. The kept pixels come back
unchanged (checked below); every regenerated pixel is drawn conditioned on all kept pixels above it.

The prior is an unconditional Gated PixelCNN on the binarized digits, trained here for a few minutes, or any saved
``PixelPriorPipeline`` folder given with ``--pipeline`` (for instance the output of ``examples/pixel_space.py`` or
``pixelprior train``; it must model 28x28 one-channel images).

Writes one PNG with four rows per block: originals, the kept top halves (hidden part gray), and two completions
with different seeds.

Usage (about 4 minutes on 2 CPU cores):
    python examples/inpaint.py --output_dir runs/inpaint
    python examples/inpaint.py --pipeline runs/pixel_space --output_dir runs/inpaint  # reuse a trained prior
    python examples/inpaint.py --output_dir /tmp/inp --max_steps 2 --hidden_channels 8 --num_layers 2  # smoke
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from PIL import Image

from pixelprior import PixelPriorPipeline
from pixelprior.data import load_dataset
from pixelprior.pipelines import make_image_grid
from pixelprior.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/inpaint")
    parser.add_argument("--pipeline", default=None, help="a saved PixelPriorPipeline folder (default: train one)")
    parser.add_argument("--max_steps", type=int, default=1500)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--hidden_channels", type=int, default=32)
    parser.add_argument("--num_layers", type=int, default=6)
    parser.add_argument("--num_digits", type=int, default=10)
    parser.add_argument("--max_eval_samples", type=int, default=None, help="evaluate on fewer images (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # 1. A pixel-space prior: trained here (unconditional, binarized digits) or loaded.
    folder = args.pipeline
    if folder is None:
        folder = os.path.join(args.output_dir, "prior")
        config = TrainConfig(
            model="gated_pixelcnn_mnist",
            model_kwargs={"hidden_channels": args.hidden_channels, "num_layers": args.num_layers},
            dataset="mnist5k",
            binarize=True,
            output_dir=folder,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            learning_rate=2e-3,
            seed=args.seed,
            max_eval_samples=args.max_eval_samples,
        )
        result = train(config)
        print(f"Prior: test {result.test_bits_per_dim:.4f} bits/dim ({result.test_nll_nats} nats per image)")
    pipe = PixelPriorPipeline.from_pretrained(folder)
    prior = pipe.prior
    if prior.num_classes is not None:
        raise ValueError(f"Expected an unconditional prior, got one with {prior.num_classes} classes.")
    binary = prior.num_values == 2

    # 2. Test digits as PIL images, and one mask: white (regenerate) on the bottom half, black (keep) on the top.
    test = load_dataset("mnist5k", "test", binarize=binary)
    bins = test.x[: args.num_digits, 0].numpy()  # (n, 28, 28) in [0, num_values)
    originals = [Image.fromarray((b * (255 // (prior.num_values - 1))).astype(np.uint8), mode="L") for b in bins]
    height, width = bins.shape[1:]
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 2 :] = 255
    mask_image = Image.fromarray(mask, mode="L")

    # 3. Two completions of every digit, one generator per image (equal seeds give equal completions).
    rows = [originals, [Image.fromarray(np.where(mask > 0, 128, np.asarray(im)).astype(np.uint8)) for im in originals]]
    for k in range(2):
        generators = [torch.Generator().manual_seed(args.seed + 1000 * k + i) for i in range(len(originals))]
        completed = pipe(image=originals, mask_image=mask_image, generator=generators).images
        for before, after in zip(originals, completed, strict=True):  # kept pixels come back unchanged
            assert np.array_equal(np.asarray(before)[: height // 2], np.asarray(after)[: height // 2])
        rows.append(completed)

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "inpainting.png")
    make_image_grid([im for row in rows for im in row], cols=len(originals), scale=2).save(path)
    print(f"Wrote {path}: rows of originals / top halves kept (gray: hidden) / two completions.")


if __name__ == "__main__":
    main()
