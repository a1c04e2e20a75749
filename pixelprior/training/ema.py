"""An exponential moving average of a model's weights, with the warm-up of diffusers' ``EMAModel``.

The average follows the weights after every optimizer step: ``ema = decay * ema + (1 - decay) * weights``. A fixed
decay of 0.9995 (PixelCNN++'s Polyak averaging) weighs the weights of the last ~2,000 steps; a run shorter than that
saves an average that still leans on its untrained start (after 20 steps, 99% of it). The warm-up grows the decay
with the step ``k`` (1-based) instead, as diffusers' ``EMAModel(use_ema_warmup=True)`` does::

    decay(k) = min(max_decay, 1 - (1 + (k - 1) / inv_gamma) ** -power)      (decay(1) = 0: a copy of the weights)

so step ``k`` averages over about ``1 / (1 - decay(k)) = (1 + (k - 1) / inv_gamma) ** power`` steps, fewer than
``k`` for ``inv_gamma >= 1`` and ``power < 1``. diffusers' ``train_unconditional.py`` uses ``inv_gamma=1``,
``power=3/4`` (0.999 at 10k steps); ``power=2/3`` suits million-step runs (0.999 at 31.6k steps).

The average starts as a copy of the weights (so it needs no bias correction). Evaluation, sample grids and the
saved pipeline swap it in with :meth:`EMA.applied_to`; a checkpoint stores it as ``ema.safetensors``. The decay is
a pure function of the step, so a resumed run continues the average exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """An exponential moving average of the parameters of ``model``.

    Args:
        model: the model to average (unwrapped: the parameter names are those of ``model.named_parameters()``).
        decay: in ``[0, 1)``; the weight of the old average at each update (the largest, with ``warmup``).
        warmup: grow the decay with the step as diffusers' ``EMAModel(use_ema_warmup=True)`` (see the module).
        inv_gamma: > 0, the warm-up's inverse multiplicative factor.
        power: > 0, the warm-up's exponent.

    Example:
        >>> ema = EMA(model, decay=0.9995, warmup=True)
        >>> for step, batch in enumerate(batches, start=1):
        ...     train_step(model, batch)
        ...     ema.update(model, step)
        >>> with ema.applied_to(model):
        ...     evaluate(model)
    """

    def __init__(
        self, model: nn.Module, decay: float, *, warmup: bool = False, inv_gamma: float = 1.0, power: float = 0.75
    ) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"Expected decay in [0, 1), got {decay!r}.")
        for name, value in (("inv_gamma", inv_gamma), ("power", power)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Expected {name} to be a positive number, got {value!r}.")
        self.decay, self.warmup, self.inv_gamma, self.power = decay, warmup, inv_gamma, power
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    def decay_at(self, step: int | None) -> float:
        """The decay of the update after optimizer step ``step`` (1-based); ``decay`` itself without warm-up."""
        if not self.warmup:
            return self.decay
        if step is None or step < 1:
            raise ValueError(f"Expected the optimizer step (>= 1) of an update with warm-up, got {step!r}.")
        if step == 1:
            return 0.0
        return min(self.decay, 1.0 - (1.0 + (step - 1) / self.inv_gamma) ** -self.power)

    def averaging_steps(self, step: int) -> float:
        """About how many of the latest steps the average weighs after step ``step``: ``1 / (1 - decay)``."""
        return 1.0 / (1.0 - self.decay_at(step))

    def horizon_warning(self, num_steps: int) -> str | None:
        """A warning when the decay at the run's last step averages over more steps than the run has, else None."""
        horizon = self.averaging_steps(num_steps)
        if horizon <= num_steps:
            return None
        left = self.decay**num_steps if not self.warmup else None
        start = f" (the untrained start keeps {left:.0%} of it)" if left is not None else ""
        return (
            f"The EMA's decay {self.decay_at(num_steps):.6g} at the last step averages over about {horizon:,.0f} "
            f"steps, more than the run's {num_steps}: the saved weights lag behind training{start}. Keep the "
            "warm-up (no --no_ema_warmup), lower --ema_decay, or pass --no_use_ema."
        )

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Move the average towards the current weights of ``model`` after optimizer step ``step`` (1-based; needed
        with warm-up)."""
        weight = 1.0 - self.decay_at(step)
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().to(self.shadow[name].dtype), weight)

    @contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block ``model`` holds the averaged weights; its own weights are restored on exit."""
        params = dict(model.named_parameters())
        backup = {name: p.detach().clone() for name, p in params.items()}
        try:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(self.shadow[name])
            yield model
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(backup[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged parameters by name (the decay and its warm-up are flags of the run, not state)."""
        return {name: t.detach().clone() for name, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the average saved by :meth:`state_dict`; names and shapes must match the model's."""
        if set(state) != set(self.shadow):
            missing, unexpected = sorted(set(self.shadow) - set(state)), sorted(set(state) - set(self.shadow))
            raise ValueError(
                f"Expected EMA weights of the model's parameters, got missing {missing}, unexpected {unexpected}."
            )
        for name, t in state.items():
            if t.shape != self.shadow[name].shape:
                raise ValueError(
                    f"Expected EMA weight {name!r} of shape {tuple(self.shadow[name].shape)}, got {tuple(t.shape)}."
                )
            self.shadow[name].copy_(t)
