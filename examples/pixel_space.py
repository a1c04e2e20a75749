"""Pixel-space generation end to end: a class-conditional Gated PixelCNN on the built-in binarized digits.

Trains with the library's training loop (the same as ``pixelprior train``), then writes one PNG with

* one row of samples per digit class (class-conditional generation through ``PixelPriorPipeline``), and
* completions: test digits whose bottom half is hidden, completed by the model (``known`` / ``known_mask``),
  shown as original / hidden / completed rows.

Usage (about 5 minutes on 2 CPU cores):
    python examples/pixel_space.py --output_dir runs/gated --max_steps 3000
    python examples/pixel_space.py --output_dir /tmp/tiny --max_steps 5 --hidden_channels 8 --num_layers 2  # smoke
"""

from __future__ import annotations

import argparse
import os

import torch

from pixelprior import PixelPriorPipeline
from pixelprior.data import load_dataset
from pixelprior.distributions import bins_to_images
from pixelprior.pipelines import make_image_grid
from pixelprior.training import TrainConfig, train


def to_pil_rows(rows: list[torch.Tensor], num_values: int, scale: int):
    """Integer grids ``(n, 1, H, W)``, one per row -> one PIL grid with ``len(rows)`` rows of ``n`` images."""
    images = bins_to_images(torch.cat(rows), num_values)  # (rows * n, 1, H, W) in [0, 1]
    pils = PixelPriorPipeline.numpy_to_pil(images.permute(0, 2, 3, 1).numpy())
    return make_image_grid(pils, cols=len(rows[0]), scale=scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/pixel_space")
    parser.add_argument("--max_steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--hidden_channels", type=int, default=32)
    parser.add_argument("--num_layers", type=int, default=8)
    parser.add_argument("--per_class", type=int, default=8, help="samples per digit class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # 1. Train (class-conditional: the dataset's digit labels reach the model).
    model_kwargs = {"hidden_channels": args.hidden_channels, "num_layers": args.num_layers, "num_classes": 10}
    config = TrainConfig(
        model="gated_pixelcnn_mnist",
        model_kwargs=model_kwargs,
        output_dir=args.output_dir,
        dataset="mnist5k",
        binarize=True,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=2e-3,
        seed=args.seed,
    )
    train(config)

    # 2. Load the saved pipeline back, as a user would, and sample one row per class.
    pipe = PixelPriorPipeline.from_pretrained(args.output_dir)
    prior = pipe.prior
    labels = torch.arange(10).repeat_interleave(args.per_class)
    generator = torch.Generator().manual_seed(args.seed)
    samples = pipe(batch_size=len(labels), class_labels=labels, generator=generator, output_type="latent").images
    class_rows = list(samples.split(args.per_class))

    # 3. Completion: keep the top half of test digits, let the model draw the bottom half.
    test = load_dataset("mnist5k", "test", binarize=True)
    x, y = test.x[: args.per_class], test.labels[: args.per_class]
    known_mask = torch.zeros_like(x, dtype=torch.bool)
    known_mask[:, :, : x.shape[2] // 2] = True
    completed = prior.sample(
        class_labels=y, known=x, known_mask=known_mask, generator=torch.Generator().manual_seed(args.seed)
    )
    assert torch.equal(completed[known_mask], x[known_mask])  # kept pixels come back unchanged
    hidden = torch.where(known_mask, x, 0)

    grid = to_pil_rows(class_rows + [x, hidden, completed], prior.num_values, scale=2)
    path = os.path.join(args.output_dir, "samples_and_completions.png")
    grid.save(path)
    print(f"Wrote {path}: one row per digit 0-9, then original / bottom half hidden / completed test digits.")


if __name__ == "__main__":
    main()
