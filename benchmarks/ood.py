"""Out-of-distribution detection with a prior of the 8-bit digits: AUROC of raw bits/dim, likelihood ratio, complexity.

The in-distribution set is the 500 test digits of ``mnist5k`` (8-bit); each out-of-distribution set, 500 images of
28x28 that need no download, is scored against it:

* scikit-learn's 8x8 digits upscaled to 28x28 (bilinear); the test digits inverted (``255 - x``), upside down,
  mirrored; 28x28 patches of scikit-learn's two sample photographs (in gray, 56x56 crops halved); uniform noise; and
  constant images (one random gray level each).

Scores, each oriented so that higher means "out of distribution": raw bits/dim under the prior; minus the likelihood
ratio of Ren et al. 2019 (the background prior is trained on the train digits with 20% of the pixels replaced by
uniform noise); the input complexity of Serra et al. 2020 (bits/dim minus an optimized PNG's). An AUROC of 1 separates
the sets, 0.5 is chance, and below 0.5 the out-of-distribution images look *more* typical than the digits: the known
failure of raw likelihood (Nalisnick et al. 2019).

Usage:
    python benchmarks/ood.py --pipeline runs/pcnnpp --background runs/pcnnpp-background
    python benchmarks/ood.py --work_dir runs/bench        # trains both priors there (PixelCNN++, a modest size)
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from compression import PIXEL_TRAIN, pipeline_folder  # benchmarks/compression.py: the same 8-bit prior
from PIL import Image
from sklearn.metrics import roc_auc_score

from pixelprior.data import load_dataset
from pixelprior.pipelines import load_pipeline
from pixelprior.scoring import score

COUNT, SIZE, MUTATION_RATE = 500, 28, 0.2


def perturbed_digits_folder(folder: str, seed: int = 0) -> str:
    """The train (and test) digits with ``MUTATION_RATE`` of their pixels replaced by uniform values, as PNG files in
    ``folder/{train,test}/digits/`` (an image-folder dataset for ``pixelprior train``)."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        target = os.path.join(folder, split, "digits")
        if os.path.isdir(target):
            continue
        os.makedirs(target)
        x = load_dataset("mnist5k", split).x.numpy()[:, 0]  # (N, 28, 28) uint8
        mutate = rng.random(x.shape) < MUTATION_RATE
        x = np.where(mutate, rng.integers(0, 256, x.shape), x).astype(np.uint8)
        for index, image in enumerate(x):
            Image.fromarray(image, "L").save(os.path.join(target, f"{index:05d}.png"))
    return folder


def photo_patches(rng: np.random.Generator) -> np.ndarray:
    """``COUNT`` gray 28x28 patches of scikit-learn's sample photographs (56x56 crops, halved)."""
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(Image.fromarray(image).convert("L")) for image in load_sample_images().images]
    patches = []
    for index in range(COUNT):
        photo = photos[index % len(photos)]
        top, left = rng.integers(0, photo.shape[0] - 56), rng.integers(0, photo.shape[1] - 56)
        crop = Image.fromarray(photo[top : top + 56, left : left + 56])
        patches.append(np.asarray(crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR)))
    return np.stack(patches)


def ood_sets(test: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Name -> ``(COUNT, 28, 28)`` uint8 out-of-distribution images."""
    rng = np.random.default_rng(seed)
    small = [load_dataset("digits", split, resolution=SIZE).x.numpy()[:, 0] for split in ("train", "test")]
    return {
        "sklearn 8x8 digits, upscaled": np.concatenate(small)[:COUNT],
        "test digits inverted": 255 - test,
        "test digits upside down": test[:, ::-1].copy(),
        "test digits mirrored": test[:, :, ::-1].copy(),
        "photo patches (sklearn samples)": photo_patches(rng),
        "uniform noise": rng.integers(0, 256, test.shape).astype(np.uint8),
        "constant images": np.broadcast_to(rng.integers(0, 256, (COUNT, 1, 1)), test.shape).astype(np.uint8),
    }


def scores_of(prior, background, images: np.ndarray) -> dict[str, torch.Tensor]:
    """The three out-of-distribution scores (higher = more atypical) and the mean bits/dim."""
    x = torch.from_numpy(np.ascontiguousarray(images)).long().unsqueeze(1)
    s = score(prior, x, background=background, batch_size=100)
    return {
        "bits/dim": s.bits_per_dim,
        "-likelihood ratio": -s.likelihood_ratio,
        "input complexity": s.input_complexity,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default=None, help="a prior of the 8-bit digits (default: trained here)")
    parser.add_argument("--background", default=None, help="its background prior (default: trained here)")
    parser.add_argument("--work_dir", default="runs/ood-benchmark", help="where priors are trained if needed")
    parser.add_argument("--steps", type=int, default=600, help="training steps of each prior trained here")
    args = parser.parse_args()
    folder = pipeline_folder(args.pipeline, os.path.join(args.work_dir, "8bit"), PIXEL_TRAIN, args.steps)
    background_folder = args.background
    if background_folder is None:
        noisy = perturbed_digits_folder(os.path.join(args.work_dir, "perturbed-digits"))
        background = os.path.join(args.work_dir, "background")
        background_folder = pipeline_folder(None, background, PIXEL_TRAIN, args.steps, dataset=noisy)
    prior, background = load_pipeline(folder).prior.eval(), load_pipeline(background_folder).prior.eval()
    test = load_dataset("mnist5k", "test").x.numpy()[:COUNT, 0]
    inside = scores_of(prior, background, test)
    print(f"prior {folder}, background {background_folder}; in-distribution: {COUNT} test digits")
    print(f"test digits: {float(inside['bits/dim'].mean()):.3f} bits/dim\n")
    print("| out-of-distribution set | mean bits/dim | AUROC: bits/dim | likelihood ratio | input complexity |")
    print("| --- | --- | --- | --- | --- |")
    for name, images in ood_sets(test).items():
        outside = scores_of(prior, background, images)
        labels = np.r_[np.zeros(len(test)), np.ones(len(images))]
        aurocs = [roc_auc_score(labels, torch.cat([inside[k], outside[k]]).numpy()) for k in inside]
        print(f"| {name} | {float(outside['bits/dim'].mean()):.3f} | " + " | ".join(f"{a:.3f}" for a in aurocs) + " |")


if __name__ == "__main__":
    main()
