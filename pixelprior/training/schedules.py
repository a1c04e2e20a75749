"""Learning-rate schedules as pure functions of the optimizer step.

A schedule is a multiplier of the base learning rate, ``lr(step) = learning_rate * factor(step)``, that depends on
the step alone (no state carried from one step to the next), so a run resumed from a checkpoint at step ``n``
continues with exactly the learning rates an uninterrupted run would have used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from .config import LR_SCHEDULES


def _factor(step: int, schedule: str, decay: float, warmup_steps: int, max_steps: int) -> float:
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if schedule == "exponential":  # PixelCNN++ (Salimans et al., 2017): lr * lr_decay**step
        return warmup * decay**step
    if schedule == "constant":
        return warmup
    # cosine: warm up linearly, then a half cosine from 1 at the end of the warm-up to 0 at max_steps.
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return warmup * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def lr_factor(
    schedule: str = "exponential", *, decay: float = 0.999995, warmup_steps: int = 0, max_steps: int = 1
) -> Callable[[int], float]:
    """The multiplier of the base learning rate at each step (0-based), for ``torch.optim.lr_scheduler.LambdaLR``.

    Args:
        schedule: ``"exponential"`` (``decay**step``), ``"constant"`` or ``"cosine"`` (to 0 at ``max_steps``).
        decay: the per-step factor of the exponential schedule.
        warmup_steps: the factor rises linearly from ``1 / warmup_steps`` to 1 over the first ``warmup_steps``.
        max_steps: the length of the run (cosine only).

    Example:
        >>> f = lr_factor("exponential", decay=0.5)
        >>> [f(step) for step in range(3)]
        [1.0, 0.5, 0.25]
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"Expected schedule to be one of {list(LR_SCHEDULES)}, got {schedule!r}.")
    return partial(_factor, schedule=schedule, decay=decay, warmup_steps=warmup_steps, max_steps=max_steps)
