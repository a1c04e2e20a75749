"""How often a class-conditional prior's samples are recognized as the digit they were drawn for.

The demo's second number (beside the test bits/dim): a classifier trained on the real training digits (scikit-learn's
RBF support-vector classifier on the pixels, on the same data the prior was trained on: binarized when the prior has
2 values) labels ``per_class`` samples of every digit, drawn through the pipeline with a seed and a temperature. The
script prints the rate per digit and overall, and the classifier's own rate on the real test digits, which bounds
what samples can reach.

Usage:
    python benchmarks/demo_recognition.py --pipeline demo-output                     # 100 samples per digit
    python benchmarks/demo_recognition.py --pipeline demo-output --per_class 10 --temperature 0.9 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Recognition:
    """What the classifier said about a set of samples: the rate per class and overall."""

    per_class: list[float]  # recognition rate of the samples drawn for each class
    overall: float  # over all samples


def data_options(num_values: int) -> dict:
    """``load_dataset`` options that give real digits the prior's values (binarized for 2, ``n`` bits for ``2**n``)."""
    if num_values == 2:
        return {"binarize": True}
    if num_values == 256:
        return {}
    bits = int(math.log2(num_values))
    if 2**bits != num_values:
        raise ValueError(f"Expected a prior over 2, 2**n or 256 values, got num_values={num_values}.")
    return {"num_bits": bits}


def features(x: torch.Tensor, num_values: int) -> np.ndarray:
    """Integer grids -> the classifier's inputs: pixel values scaled to ``[0, 1]``, flattened.

    Shapes:
        x: ``(N, C, H, W)`` long -> ``(N, C * H * W)`` float32
    """
    return (x.flatten(1).float() / (num_values - 1)).numpy()


def fit_classifier(dataset: str, num_values: int, max_train: int | None = None):
    """An RBF ``SVC`` fitted on the real training digits of ``dataset``, valued as the prior's data.

    Args:
        dataset: a :func:`pixelprior.data.load_dataset` spec with class labels (``mnist5k``).
        num_values: the prior's values per pixel.
        max_train: fit on the first N training images only (a quick run); None: all of them.
    """
    from sklearn.svm import SVC

    from pixelprior.data import load_dataset

    train = load_dataset(dataset, "train", **data_options(num_values))
    if train.labels is None:
        raise ValueError(f"Expected a dataset with class labels to fit the classifier on, got {dataset!r} without.")
    n = len(train) if max_train is None else min(max_train, len(train))
    # mnist5k is stored sorted by class but its split is shuffled, so a prefix holds every digit.
    return SVC(kernel="rbf").fit(features(train.x[:n].long(), num_values), train.labels[:n].numpy())


def recognition(classifier, x: torch.Tensor, labels: torch.Tensor, num_values: int, num_classes: int) -> Recognition:
    """The fraction of ``x`` that ``classifier`` assigns to ``labels``, per class and overall.

    Shapes:
        x: ``(N, C, H, W)`` long, labels: ``(N,)`` long
    """
    hits = classifier.predict(features(x, num_values)) == labels.numpy()
    per_class = [
        float(hits[labels.numpy() == k].mean()) if (labels == k).any() else math.nan for k in range(num_classes)
    ]
    return Recognition(per_class=per_class, overall=float(hits.mean()))


def draw(pipe, per_class: int, seed: int, temperature: float, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of every class, in class order, as integer grids (one generator for all batches).

    Shapes:
        -> samples ``(num_classes * per_class, C, H, W)`` long, labels ``(num_classes * per_class,)`` long
    """
    num_classes = pipe.prior.num_classes
    if num_classes is None:
        raise ValueError("Expected a class-conditional prior (num_classes set), got an unconditional one.")
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    for part in labels.split(batch_size):
        out = pipe(
            batch_size=len(part), class_labels=part, generator=generator, temperature=temperature,
            output_type="latent", progress=False,
        )  # fmt: skip
        chunks.append(out.images)
    return torch.cat(chunks), labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="a pipeline folder of a class-conditional prior")
    parser.add_argument("--dataset", default="mnist5k", help="the real digits the classifier is fitted on")
    parser.add_argument("--per_class", type=int, default=100, help="samples drawn per class (default: 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=500, help="samples drawn at once")
    parser.add_argument("--max_train", type=int, default=None, help="fit the classifier on the first N digits only")
    args = parser.parse_args(argv)
    if args.per_class < 1 or args.batch_size < 1 or not args.temperature > 0:
        parser.error("expected --per_class >= 1, --batch_size >= 1 and --temperature > 0")
    if not os.path.isfile(os.path.join(args.pipeline, "model_index.json")):
        parser.error(f"argument --pipeline: expected a folder with a model_index.json, got {args.pipeline!r}")

    from diffusers.utils import logging as diffusers_logging

    from pixelprior.data import load_dataset
    from pixelprior.pipelines import load_pipeline

    diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar
    pipe = load_pipeline(args.pipeline)
    prior = pipe.prior
    K = prior.num_values
    try:
        start = time.perf_counter()
        samples, labels = draw(pipe, args.per_class, args.seed, args.temperature, args.batch_size)
        seconds = time.perf_counter() - start
        classifier = fit_classifier(args.dataset, K, args.max_train)
        test = load_dataset(args.dataset, "test", **data_options(K))
    except ValueError as error:
        parser.error(str(error))
    real = recognition(classifier, test.x.long(), test.labels, K, prior.num_classes)
    drawn = recognition(classifier, samples, labels, K, prior.num_classes)

    print(f"{len(samples)} samples ({args.per_class} per class, seed {args.seed}, temperature {args.temperature:g})")
    print(f"drawn in {seconds:.1f} s; classifier: RBF SVC on the real {args.dataset} training digits")
    print("| class | samples recognized | real test digits recognized |")
    print("| --- | --- | --- |")
    for k in range(prior.num_classes):
        print(f"| {k} | {drawn.per_class[k]:.1%} | {real.per_class[k]:.1%} |")
    print(f"| all | {drawn.overall:.1%} | {real.overall:.1%} |")
    results = os.path.join(args.pipeline, "train_results.json")
    if os.path.isfile(results):
        with open(results) as f:
            print(f"test bits/dim (train_results.json): {json.load(f)['test_bits_per_dim']:.4f}")
    print(
        f"recognized: {drawn.overall:.1%} of the samples; the classifier on the real test digits: {real.overall:.1%}"
    )


if __name__ == "__main__":
    sys.exit(main())
