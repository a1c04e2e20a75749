"""Training with Accelerate: the configuration, the loop and its tested pieces (metrics)."""

from .config import TrainConfig
from .metrics import evaluate, nats_per_image
from .trainer import PriorObjective, TrainResult, build_prior, check_data_matches_model, train

__all__ = [
    "PriorObjective",
    "TrainConfig",
    "TrainResult",
    "build_prior",
    "check_data_matches_model",
    "evaluate",
    "nats_per_image",
    "train",
]
