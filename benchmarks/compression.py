"""Lossless compression of the built-in test digits: a prior's code against PNG, WebP and TIFF CCITT group 4.

Prints one table per kind of digit (binarized at 0.5, and 8-bit) over the first ``--count`` test digits of
``mnist5k``: bits/dim of pixelprior's stream (the whole file: header and labels included) and of the model's own ideal
code length ``sum(-log2 p(x))``, and of the same digits through optimized PNG, WebP lossless and, for binary digits,
TIFF CCITT group 4, each as one file per digit and as one mosaic of all of them; with encode and decode images/s.
Every codec's output is decoded and checked to be the digits, exactly.

The models are pipeline folders (``--binary_pipeline``: the demo's; ``--pixel_pipeline``: a PixelCNN++ on the 8-bit
digits), or trained here by ``pixelprior train`` into ``--work_dir`` when not given (``--binary_steps``,
``--pixel_steps``; a modest size, for a CPU).

Usage:
    python benchmarks/compression.py --binary_pipeline demo-output --pixel_pipeline runs/pcnnpp
    python benchmarks/compression.py --work_dir runs/bench --binary_steps 2000 --pixel_steps 600   # trains them
"""

from __future__ import annotations

import argparse
import io
import math
import os
import time
from collections.abc import Callable

import torch
from PIL import Image

from pixelprior.cli import main as pixelprior_main
from pixelprior.compression import compress, decode
from pixelprior.compression.pixels import grid_to_image, image_to_grid
from pixelprior.data import load_dataset
from pixelprior.pipelines import load_pipeline

BINARY_TRAIN = [
    "--model", "pixelcnn_mnist", "--model_kwargs", '{"hidden_channels": 32, "num_layers": 6}', "--binarize",
    "--batch_size", "16", "--learning_rate", "2e-3",
]  # fmt: skip
PIXEL_TRAIN = [
    "--model", "pixelcnn_pp_mnist", "--batch_size", "16", "--learning_rate", "2e-3",
    "--model_kwargs", '{"hidden_channels": 16, "num_layers": 1, "num_mixtures": 5, "dropout": 0.0}',
]  # fmt: skip

# codec -> (PIL save options per image mode, or None where the codec does not apply)
CODECS: dict[str, Callable[[str], dict | None]] = {
    "PNG (optimized)": lambda mode: {"format": "PNG", "optimize": True},
    "WebP lossless": lambda mode: {"format": "WEBP", "lossless": True, "quality": 100, "method": 6},
    "TIFF CCITT G4": lambda mode: {"format": "TIFF", "compression": "group4"} if mode == "1" else None,
}


def pipeline_folder(given: str | None, folder: str, flags: list[str], steps: int, dataset: str = "mnist5k") -> str:
    """``given``, or a pipeline trained into ``folder`` by ``pixelprior train`` (reused when already there)."""
    if given is not None:
        return given
    if not os.path.isfile(os.path.join(folder, "model_index.json")):
        argv = ["train", *flags, "--dataset", dataset, "--output_dir", folder, "--max_steps", str(steps)]
        status = pixelprior_main([*argv, "--seed", "0", "--logger", "none"])
        if status:
            raise SystemExit(f"training {folder} failed with status {status}")
    return folder


def mosaic(images: list[Image.Image], cols: int) -> Image.Image:
    """All images in one, ``cols`` per row, no padding (a blank tail where the count does not fill the last row)."""
    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    sheet = Image.new(images[0].mode, (cols * w, rows * h))
    for index, image in enumerate(images):
        sheet.paste(image, ((index % cols) * w, (index // cols) * h))
    return sheet


def classical(images: list[Image.Image], options: dict, grids: torch.Tensor, num_values: int) -> dict:
    """Bytes and images/s of a PIL codec, one file per image and one mosaic; decoded images are checked exactly."""
    start = time.perf_counter()
    files = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, **options)
        files.append(buffer.getvalue())
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = []
    for data in files:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if grids.shape[1] == 1 and image.mode not in ("1", "L"):
                image = image.convert("L")  # WebP decodes gray as RGB (equal channels: L is exact)
            decoded.append(image_to_grid(image, num_values, grids.shape[1], grids.shape[2:], options["format"]))
    decode_s = time.perf_counter() - start
    assert torch.equal(torch.stack(decoded), grids), f"{options['format']} did not round-trip"
    buffer = io.BytesIO()
    mosaic(images, cols=25).save(buffer, **options)
    count = len(images)
    return {"files": sum(map(len, files)), "mosaic": buffer.tell(), "enc": count / encode_s, "dec": count / decode_s}


def measure(pipeline: str, binarize: bool, count: int, batch_size: int) -> list[tuple]:
    """Rows ``(method, bits/dim, ideal bits/dim, enc img/s, dec img/s)`` for one kind of digit."""
    pipe = load_pipeline(pipeline)
    prior = pipe.prior.eval()
    data = load_dataset("mnist5k", "test", binarize=binarize)
    x = data.x[:count].long()
    labels = data.labels[:count] if prior.num_classes is not None else None
    dims = x.numel()
    with torch.no_grad():
        ideal = float(-prior.log_prob(x, labels).double().sum()) / math.log(2) / dims
    start = time.perf_counter()
    stream = compress(prior, x, class_labels=labels, batch_size=batch_size)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode(prior, stream)
    decode_s = time.perf_counter() - start
    assert torch.equal(decoded.x, x), "pixelprior did not round-trip"
    name = f"pixelprior ({type(prior).__name__}, one stream)"
    payload = 4 * decoded.header.payload_words
    rows = [(name, 8 * len(stream) / dims, ideal, count / encode_s, count / decode_s)]
    rows.append((f"  the same, its payload alone ({len(stream) - payload} header bytes left out)", 8 * payload / dims))
    rows[-1] += (None, None, None)
    images = [grid_to_image(grid, prior.num_values) for grid in x]
    for codec, options_of in CODECS.items():
        options = options_of(images[0].mode)
        if options is None:
            continue
        result = classical(images, options, x, prior.num_values)
        rows.append((f"{codec}, one file per digit", 8 * result["files"] / dims, None, result["enc"], result["dec"]))
        rows.append((f"{codec}, one mosaic", 8 * result["mosaic"] / dims, None, None, None))
    return rows


def print_table(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}\n")
    print("| method | bits/dim | model's -log2 p(x) bits/dim | encode img/s | decode img/s |")
    print("| --- | --- | --- | --- | --- |")
    for method, bpd, ideal, enc, dec in rows:
        cells = [f"{bpd:.4f}"] + [f"{v:.4f}" if v is not None else "" for v in (ideal,)]
        cells += [f"{v:.1f}" if v is not None else "" for v in (enc, dec)]
        print(f"| {method} | " + " | ".join(cells) + " |")
    best = min(bpd for method, bpd, *_ in rows[2:])
    print(f"\npixelprior / best classical: {rows[0][1] / best:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary_pipeline", default=None, help="a pipeline over binarized digits (the demo's)")
    parser.add_argument("--pixel_pipeline", default=None, help="a pipeline over 8-bit digits (a PixelCNN++)")
    parser.add_argument("--work_dir", default="runs/compression-benchmark", help="where models are trained if needed")
    parser.add_argument("--binary_steps", type=int, default=2000, help="training steps of the binary model")
    parser.add_argument("--pixel_steps", type=int, default=600, help="training steps of the 8-bit model")
    parser.add_argument("--count", type=int, default=500, help="test digits (default: all 500)")
    parser.add_argument("--batch_size", type=int, default=100, help="digits per coding batch")
    parser.add_argument("--kinds", nargs="+", default=["binary", "8bit"], choices=["binary", "8bit"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.count} test digits of mnist5k")
    if "binary" in args.kinds:
        given, folder = args.binary_pipeline, os.path.join(args.work_dir, "binary")
        folder = pipeline_folder(given, folder, BINARY_TRAIN, args.binary_steps)
        print_table(f"Binarized digits ({folder})", measure(folder, True, args.count, args.batch_size))
    if "8bit" in args.kinds:
        folder = pipeline_folder(
            args.pixel_pipeline, os.path.join(args.work_dir, "8bit"), PIXEL_TRAIN, args.pixel_steps
        )
        print_table(f"8-bit digits ({folder})", measure(folder, False, args.count, args.batch_size))


if __name__ == "__main__":
    main()
