"""Training with Accelerate: the configuration, the loop and its tested pieces (metrics, EMA, checkpoints, the data
order, learning-rate schedules, gradient checkpointing, loggers)."""

from .checkpoint import latest_checkpoint, list_checkpoints
from .config import TrainConfig
from .ema import EMA
from .gradient_checkpointing import enable_gradient_checkpointing
from .metrics import evaluate, nats_per_image
from .run_folder import OutputError
from .sampler import ShardedBatchSampler
from .schedules import lr_factor
from .trainer import (
    NonFiniteLossError,
    PriorObjective,
    Trainer,
    TrainResult,
    build_prior,
    check_data_matches_model,
    make_optimizer,
    train,
)

__all__ = [
    "EMA",
    "NonFiniteLossError",
    "OutputError",
    "PriorObjective",
    "ShardedBatchSampler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_prior",
    "check_data_matches_model",
    "enable_gradient_checkpointing",
    "evaluate",
    "latest_checkpoint",
    "list_checkpoints",
    "lr_factor",
    "make_optimizer",
    "nats_per_image",
    "train",
]
