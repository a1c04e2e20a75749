"""The training configuration: one dataclass whose fields are the ``pixelprior train`` flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """What ``pixelprior train`` runs; every field is the command-line flag of the same name.

    Args:
        model: a registered prior name (``pixelprior.list_priors()``).
        output_dir: where the trained :class:`~pixelprior.pipelines.PixelPriorPipeline` is saved.
        model_kwargs: keyword overrides of the registered configuration (``--model_kwargs`` JSON).
        dataset: a dataset name (``pixelprior.data.list_datasets()``).
        binarize: threshold the images at 0.5 (the model then needs ``num_values = 2``).
        max_steps: optimizer steps.
        batch_size: images per step and per process.
        learning_rate: Adam's learning rate.
        seed: seeds the model's initialization, the data order and every other random draw.
        eval_batch_size: images per batch of the final exact evaluation.
    """

    model: str
    output_dir: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist5k"
    binarize: bool = False
    max_steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    eval_batch_size: int = 250

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected {name} to be a positive int, got {value!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"Expected learning_rate > 0, got {self.learning_rate!r}.")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"Expected model_kwargs to be a dict, got {type(self.model_kwargs).__name__}.")
