"""Image GPT completions: the bottom half of photographs, completed by OpenAI's Image GPT converted to pixelprior.

The best-known pictures of Image GPT (Chen et al. 2020) are completions: the top half of an image is given and the
model draws the rest, pixel after pixel. This script converts a transformers Image GPT (``openai/imagegpt-small``,
``-medium``, ``-large``, or any local ``ImageGPTForCausalImageModeling`` folder) with
:func:`pixelprior.converters.convert_imagegpt` (or loads a pipeline folder already written by ``pixelprior convert
imagegpt``), cuts square crops out of scikit-learn's two sample photographs (or the images of ``--images``), resizes
them to the model's grid and completes their bottom halves through ``PixelPriorPipeline(image=..., mask_image=...)``.
The pipeline's palette (the model's 512 colour clusters) encodes the kept top halves to colour ids and decodes the
completions back to RGB.

Writes one PNG: per crop a column of the original (in the palette's colours), the kept top half (the hidden part
gray), and ``--num_completions`` completions with different seeds.

Usage:
    python examples/imagegpt_completion.py --model openai/imagegpt-small --output_dir runs/igpt  # needs the Hub
    pixelprior convert imagegpt openai/imagegpt-small --output_dir igpt-small  # once, then offline:
    python examples/imagegpt_completion.py --pipeline igpt-small --output_dir runs/igpt --num_crops 4
(32 x 32 grids: 512 positions to draw per completion; a few minutes per batch for imagegpt-small on a laptop CPU.)
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from PIL import Image

from pixelprior import PixelPriorPipeline
from pixelprior.converters import convert_imagegpt
from pixelprior.pipelines import make_image_grid


def photo_crops(paths: list[str] | None, count: int) -> list[Image.Image]:
    """``count`` square RGB crops: along the photographs of ``paths``, or of scikit-learn's sample images."""
    if paths:
        photos = [Image.open(path).convert("RGB") for path in paths]
    else:
        from sklearn.datasets import load_sample_images

        photos = [Image.fromarray(image) for image in load_sample_images().images]  # china.jpg, flower.jpg
    per_photo = -(-count // len(photos))
    crops = []
    for k in range(count):
        photo = photos[k % len(photos)]
        side, slack = min(photo.size), max(photo.size) - min(photo.size)
        offset = slack * (k // len(photos)) // max(1, per_photo - 1)  # slide the square along the long side
        box = (offset, 0, offset + side, side) if photo.width >= photo.height else (0, offset, side, offset + side)
        crops.append(photo.crop(box))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a transformers Image GPT folder or Hub id (converted here)")
    source.add_argument("--pipeline", help="a pipeline folder written by `pixelprior convert imagegpt`")
    parser.add_argument("--output_dir", default="runs/imagegpt_completion")
    parser.add_argument("--images", nargs="*", default=None, help="image files (default: scikit-learn's samples)")
    parser.add_argument("--num_crops", type=int, default=4)
    parser.add_argument("--num_completions", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = convert_imagegpt(args.model) if args.model else PixelPriorPipeline.from_pretrained(args.pipeline)
    if pipe.palette is None:
        raise ValueError("Expected an Image GPT pipeline with its colour palette, got one without.")
    height, width = pipe.prior.grid_size

    # 1. Crops at the model's grid, and one mask: white (regenerate) on the bottom half, black (keep) on the top.
    crops = [crop.resize((width, height), Image.BICUBIC) for crop in photo_crops(args.images, args.num_crops)]
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 2 :] = 255
    mask_image = Image.fromarray(mask, mode="L")

    # 2. The originals as the palette shows them, and the kept halves (the hidden part gray).
    bins = torch.stack([torch.from_numpy(np.asarray(crop)).permute(2, 0, 1).long() for crop in crops])  # (n, 3, H, W)
    ids = pipe.palette.encode(bins)  # (n, 1, H, W): what the pipeline keeps of each crop
    quantized = [Image.fromarray(im.permute(1, 2, 0).numpy().astype(np.uint8)) for im in pipe.palette.decode(ids)]
    kept = [np.asarray(im).copy() for im in quantized]
    for im in kept:
        im[height // 2 :] = 128
    columns = [quantized, [Image.fromarray(im) for im in kept]]

    # 3. Completions, one generator per image (equal seeds give equal completions); kept pixels come back unchanged.
    for k in range(args.num_completions):
        generators = [torch.Generator().manual_seed(args.seed + 1000 * k + i) for i in range(len(crops))]
        done = pipe(
            image=crops, mask_image=mask_image, generator=generators, temperature=args.temperature, output_type="pil"
        ).images
        for before, after in zip(quantized, done, strict=True):
            assert np.array_equal(np.asarray(before)[: height // 2], np.asarray(after)[: height // 2])
        columns.append(done)

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "completions.png")
    rows = [column[i] for i in range(len(crops)) for column in columns]  # one row per crop
    make_image_grid(rows, cols=len(columns), scale=max(1, 128 // width)).save(path)
    print(
        f"Wrote {path}: per crop, the original (palette colours), the kept half, {args.num_completions} completions."
    )


if __name__ == "__main__":
    main()
