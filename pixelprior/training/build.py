"""The pieces a training run is built from: the model, the data (checked against each other), the optimizer.

:func:`build_prior` makes the model from a registry name, a saved ``config.json`` or a trained pipeline,
:func:`load_splits` the two splits, :func:`check_data_matches_model` says which flag to pass when they disagree,
:class:`PriorObjective` is the loss as a module's ``forward`` (what DDP and FSDP synchronize) and
:func:`make_optimizer` is Adam as the trainer runs it.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..data import GridDataset, load_dataset, parse_dataset
from ..models import AutoregressivePrior, create_prior
from .config import TrainConfig
from .init_from import model_config_file, prior_from_pipeline

if TYPE_CHECKING:
    from diffusers import VQModel


class PriorObjective(nn.Module):
    """The prior's loss (mean bits/dim) as a module's ``forward``.

    DistributedDataParallel (and FSDP) synchronize what runs through the wrapped module's ``forward``; a prior's
    ``forward`` returns distribution parameters, so the loss is wrapped as the forward instead. ``per_image=True``
    gives each image's bits/dim (evaluation through the wrapped model).

    Shapes:
        x: ``(B, C, H, W)`` long, class_labels: ``(B,)`` or None -> ``()``, or ``(B,)`` with ``per_image``
    """

    def __init__(self, prior: AutoregressivePrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, per_image: bool = False
    ) -> torch.Tensor:
        if per_image:
            return self.prior.bits_per_dim(x, class_labels=class_labels)
        return self.prior.loss(x, class_labels=class_labels)


def make_optimizer(parameters: Any, learning_rate: float) -> torch.optim.Adam:
    """Adam as the trainer (and ``benchmarks/training.py``) runs it: the fused kernel, one launch per step on a GPU
    for all the parameters instead of several per parameter (CPU included; the same update up to rounding)."""
    return torch.optim.Adam(parameters, lr=learning_rate, fused=True)


def _read_model_config(path: str) -> dict[str, Any]:
    file = model_config_file(path)  # a file, a prior's folder or a run folder
    with open(file) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"Expected a JSON object in {file!r}, got invalid JSON ({error}).") from None
    if not isinstance(config, dict) or "_class_name" not in config:
        raise ValueError(f"Expected a JSON object with a '_class_name' in {file!r}, got {str(config)[:80]!r}.")
    return config


def build_prior(config: TrainConfig, init_pipeline: Any | None = None) -> AutoregressivePrior:
    """The untrained model: ``create_prior(config.model, **config.model_kwargs)``, or the class and arguments of
    ``config.model_config`` (a saved ``config.json``, or a run folder's) overridden by ``config.model_kwargs``; with
    ``config.init_from``, the trained prior of that pipeline (``init_pipeline``, once loaded; see ``init_from.py``).

    Unknown argument names are a ``ValueError`` (the registry's check: ``models.registry.check_arguments``).
    """
    if config.init_from is not None:
        return prior_from_pipeline(config, init_pipeline)
    if config.model is not None:
        return create_prior(config.model, **config.model_kwargs)
    from ..models.registry import check_arguments, prior_class

    saved = _read_model_config(config.model_config)
    cls = prior_class(saved["_class_name"])
    kwargs = {k: v for k, v in saved.items() if not k.startswith("_")}
    kwargs.update(config.model_kwargs)
    check_arguments(cls, kwargs)
    return cls(**kwargs)


def check_data_matches_model(
    prior: AutoregressivePrior, dataset: GridDataset, config: TrainConfig, split: str = "train"
) -> None:
    """Raise a ValueError saying what to pass when the data (its ``split``) and the model disagree on their grids,
    values or labels. The trainer checks both splits before the first step."""
    model = config.model_name
    model_grid = (prior.in_channels, *prior.grid_size)
    data_grid = (dataset.in_channels, *dataset.sample_size)
    if model_grid != data_grid:
        raise ValueError(
            f"Expected model {model!r} to model {config.dataset!r} {split} grids of shape (C, H, W) = {data_grid}, "
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
            f"{model!r} with num_values={prior.num_values}: {fix}."
        )
    if prior.num_classes is not None:
        if dataset.labels is None:
            raise ValueError(
                f"Expected labelled data for class-conditional model {model!r}, but {config.dataset!r} ({split}) "
                "has no labels. Pass --model_kwargs '{\"num_classes\": null}'."
            )
        if dataset.num_classes is not None and dataset.num_classes > prior.num_classes:
            raise ValueError(
                f"Expected a model with num_classes >= {dataset.num_classes} for {config.dataset!r}, got "
                f"num_classes={prior.num_classes}. Pass --model_kwargs '{{\"num_classes\": {dataset.num_classes}}}'."
            )
        top = int(dataset.labels.max()) if len(dataset.labels) else -1
        if top >= prior.num_classes:
            raise ValueError(
                f"Expected {split} labels of {config.dataset!r} in [0, {prior.num_classes}) for model {model!r}, got "
                f"label {top}. Pass --model_kwargs '{{\"num_classes\": {top + 1}}}'."
            )


def load_splits(config: TrainConfig) -> tuple[GridDataset, GridDataset]:
    """The train and test splits of ``config.dataset`` (with ``--resolution``, ``--num_bits``, ``--data_dir``)."""
    kwargs = dict(
        binarize=config.binarize, resolution=config.resolution, num_bits=config.num_bits, data_dir=config.data_dir
    )
    return load_dataset(config.dataset, "train", **kwargs), load_dataset(config.dataset, "test", **kwargs)


def load_codes_vqvae(config: TrainConfig) -> VQModel | None:
    """The VQModel a ``codes:`` dataset was encoded with (its pipeline decodes with it), or None for pixel data.

    Raises:
        ValueError: naming the codes file and the VQModel's path, when that cannot be loaded.
    """
    kind, codes_file = parse_dataset(config.dataset)
    if kind != "codes":
        return None
    from ..data.codes import check_vqvae_of_codes, codes_metadata
    from ..vqmodel import load_vqmodel

    path = os.path.expanduser(codes_file)
    folder = check_vqvae_of_codes(path, codes_metadata(path))
    try:
        return load_vqmodel(folder)
    except ValueError as error:
        raise ValueError(
            f"Expected the VQModel of the codes file {codes_file!r} at {folder!r} to load: {error}"
        ) from None


def first_items(dataset: Dataset, n: int | None) -> Dataset:
    """The first ``n`` items of ``dataset`` (all of them when ``n`` is None or larger)."""
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))
