"""Exact evaluation in bits per dimension, and its conversion to nats per image."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from ..data import GridDataset
from ..models import AutoregressivePrior


@torch.no_grad()
def evaluate(
    prior: AutoregressivePrior,
    dataset: GridDataset,
    batch_size: int = 250,
    accelerator: Accelerator | None = None,
    bits_per_dim: Callable[..., torch.Tensor] | None = None,
) -> float:
    """Mean bits per dimension of ``prior`` over every image of ``dataset``: exact, no sampling, no subset.

    With an ``accelerator`` the images are shared between its processes and gathered back without the padding
    duplicates of the last batch, so every process returns the same exact value.

    Args:
        prior: the model (unwrapped), evaluated in eval mode; its previous mode is restored.
        dataset: integer grids, with class labels when the prior is class-conditional.
        batch_size: images per forward pass (per process).
        accelerator: shares the work between processes when given.
        bits_per_dim: computes ``(B,)`` bits/dim from ``(x, class_labels=...)`` instead of ``prior.bits_per_dim``
            (e.g. the FSDP-wrapped model, whose parameters the unwrapped prior only holds shards of).
    """
    bits_per_dim = bits_per_dim if bits_per_dim is not None else prior.bits_per_dim
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
    was_training = prior.training
    prior.eval()
    try:
        values = []
        for batch in loader:
            labels = batch.get("class_labels") if prior.num_classes is not None else None
            bpd = bits_per_dim(batch["x"], class_labels=labels)  # (B,)
            values.append(accelerator.gather_for_metrics(bpd) if accelerator is not None else bpd)
    finally:
        prior.train(was_training)
    values = torch.cat(values)
    if len(values) != len(dataset):
        raise ValueError(f"Expected {len(dataset)} evaluated images, got {len(values)}.")
    return values.double().mean().item()


def nats_per_image(bits_per_dim: float, num_dims: int) -> float:
    """Negative log-likelihood of a whole image in nats: ``bits_per_dim * num_dims * ln 2``."""
    return bits_per_dim * num_dims * math.log(2.0)
