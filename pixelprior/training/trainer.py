"""The Accelerate training loop behind ``pixelprior train``.

One code path for one CPU, several CPU processes and several GPUs: ``accelerate launch`` decides, this file
does not. The model is built by registry name (``create_prior``), trained with Adam on the loss every prior
defines (mean bits per dimension), evaluated exactly on the whole train and test splits, and saved as a
:class:`~pixelprior.pipelines.PixelPriorPipeline` folder, with the measured numbers and the configuration in
``train_results.json`` beside it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import GridDataset, load_dataset
from ..models import AutoregressivePrior, create_prior
from ..pipelines import PixelPriorPipeline
from .config import TrainConfig
from .metrics import evaluate, nats_per_image

RESULTS_FILE = "train_results.json"


@dataclass
class TrainResult:
    """What a run measured: exact bits/dim over each split, and nats per image for binary data."""

    steps: int
    train_bits_per_dim: float
    test_bits_per_dim: float
    train_nll_nats: float | None
    test_nll_nats: float | None
    seconds: float
    output_dir: str


class PriorObjective(nn.Module):
    """The prior's loss (mean bits/dim) as a module's ``forward``.

    DistributedDataParallel synchronizes gradients of what runs through the wrapped module's ``forward``;
    a prior's ``forward`` returns distribution parameters, so the loss is wrapped as the forward instead.

    Shapes:
        x: ``(B, C, H, W)`` long, class_labels: ``(B,)`` or None -> ``()``
    """

    def __init__(self, prior: AutoregressivePrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.prior.loss(x, class_labels=class_labels)


def build_prior(config: TrainConfig) -> AutoregressivePrior:
    """``create_prior(config.model, **config.model_kwargs)`` (unknown keys are a ``ValueError`` there)."""
    return create_prior(config.model, **config.model_kwargs)


def check_data_matches_model(prior: AutoregressivePrior, dataset: GridDataset, config: TrainConfig) -> None:
    """Raise a ValueError saying what to pass when the data and the model disagree on their grids or values."""
    model_grid = (prior.in_channels, *prior.grid_size)
    data_grid = (dataset.in_channels, *dataset.sample_size)
    if model_grid != data_grid:
        raise ValueError(
            f"Expected model {config.model!r} to model {config.dataset!r} grids of shape (C, H, W) = {data_grid}, "
            f'got a model of {model_grid}. Pass --model_kwargs \'{{"in_channels": {data_grid[0]}, '
            f'"sample_size": [{data_grid[1]}, {data_grid[2]}]}}\'.'
        )
    if prior.num_values != dataset.num_values:
        if config.binarize:
            fix = "pass --model_kwargs '{\"num_values\": 2}' or drop --binarize"
        elif prior.num_values == 2:
            fix = f"pass --binarize or --model_kwargs '{{\"num_values\": {dataset.num_values}}}'"
        else:
            fix = f"pass --model_kwargs '{{\"num_values\": {dataset.num_values}}}'"
        what = "binarized" if config.binarize else "unbinarized"
        raise ValueError(
            f"Expected a model with num_values={dataset.num_values} for {what} {config.dataset!r}, got model "
            f"{config.model!r} with num_values={prior.num_values}: {fix}."
        )
    if prior.num_classes is not None:
        if dataset.labels is None:
            raise ValueError(
                f"Expected labelled data for class-conditional model {config.model!r}, but {config.dataset!r} has "
                "no labels. Pass --model_kwargs '{\"num_classes\": null}'."
            )
        if dataset.num_classes is not None and dataset.num_classes > prior.num_classes:
            raise ValueError(
                f"Expected a model with num_classes >= {dataset.num_classes} for {config.dataset!r}, got "
                f"num_classes={prior.num_classes}. Pass --model_kwargs '{{\"num_classes\": {dataset.num_classes}}}'."
            )


def _forever(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def _launched_on_cpu_only() -> bool:
    """Several processes were launched (torchrun, ``accelerate launch``) on a machine with no accelerator.

    ``accelerate launch`` starts its workers through torchrun for a multi-process config, but Accelerate only
    joins them in a CPU (gloo) process group when told ``cpu=True``; without it each worker would train alone.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return world_size > 1 and not has_accelerator


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` on ``config.dataset`` and save the pipeline in ``config.output_dir``.

    Every process returns the same :class:`TrainResult`; only the main process prints and writes.
    """
    accelerator = Accelerator(cpu=_launched_on_cpu_only())
    set_seed(config.seed)
    train_set = load_dataset(config.dataset, "train", binarize=config.binarize)
    test_set = load_dataset(config.dataset, "test", binarize=config.binarize)
    prior = build_prior(config)
    check_data_matches_model(prior, train_set, config)
    conditional = prior.num_classes is not None

    objective = PriorObjective(prior)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.learning_rate)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True)
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    if accelerator.is_main_process:
        num_params = sum(p.numel() for p in prior.parameters())
        accelerator.print(
            f"Training {config.model} ({type(prior).__name__}, {num_params:,} parameters) on {config.dataset}"
            f"{' (binarized)' if config.binarize else ''}: {len(train_set)} train / {len(test_set)} test images, "
            f"{config.max_steps} steps of {config.batch_size} x {accelerator.num_processes} process(es)."
        )

    start = time.perf_counter()
    objective.train()
    batches = _forever(loader)
    bar = tqdm(range(config.max_steps), desc="train", disable=not accelerator.is_local_main_process)
    for _ in bar:
        batch = next(batches)
        loss = objective(batch["x"], batch["class_labels"] if conditional else None)  # () bits/dim
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(bpd=f"{loss.item():.4f}")
    bar.close()
    seconds = time.perf_counter() - start

    prior = accelerator.unwrap_model(objective).prior
    train_bpd = evaluate(prior, train_set, config.eval_batch_size, accelerator)
    test_bpd = evaluate(prior, test_set, config.eval_batch_size, accelerator)
    num_dims = prior.in_channels * prior.grid_size[0] * prior.grid_size[1]
    binary = prior.num_values == 2
    result = TrainResult(
        steps=config.max_steps,
        train_bits_per_dim=train_bpd,
        test_bits_per_dim=test_bpd,
        train_nll_nats=nats_per_image(train_bpd, num_dims) if binary else None,
        test_nll_nats=nats_per_image(test_bpd, num_dims) if binary else None,
        seconds=seconds,
        output_dir=config.output_dir,
    )

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        PixelPriorPipeline(prior=prior).save_pretrained(config.output_dir)
        with open(os.path.join(config.output_dir, RESULTS_FILE), "w") as f:
            json.dump({**asdict(result), "config": asdict(config)}, f, indent=2)
        accelerator.print(format_result(result))
        accelerator.print(f"Saved the pipeline to {config.output_dir} (PixelPriorPipeline.from_pretrained).")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def format_result(result: TrainResult) -> str:
    """The summary lines ``pixelprior train`` prints at the end."""
    lines = [
        f"Trained {result.steps} steps in {result.seconds:.1f} s.",
        f"train bits/dim: {result.train_bits_per_dim:.4f}",
        f"test bits/dim: {result.test_bits_per_dim:.4f}",
    ]
    if result.test_nll_nats is not None:
        lines += [
            f"train NLL: {result.train_nll_nats:.2f} nats/image",
            f"test NLL: {result.test_nll_nats:.2f} nats/image",
        ]
    return "\n".join(lines)
