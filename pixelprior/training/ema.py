"""Polyak averaging of a model's weights (an exponential moving average), as PixelCNN++ evaluates with.

The average starts from the weights themselves (not from zero, so it needs no bias correction) and follows them
after every optimizer step: ``ema = decay * ema + (1 - decay) * weights``. Evaluation, sample grids and the saved
pipeline swap it in with :meth:`EMA.applied_to`; a checkpoint stores it as ``ema.safetensors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """An exponential moving average of the parameters of ``model``.

    Args:
        model: the model to average (unwrapped: the parameter names are those of ``model.named_parameters()``).
        decay: in ``[0, 1)``; the weight of the old average at each update.

    Example:
        >>> ema = EMA(model, decay=0.999)
        >>> for batch in batches:
        ...     train_step(model, batch)
        ...     ema.update(model)
        >>> with ema.applied_to(model):
        ...     evaluate(model)
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"Expected decay in [0, 1), got {decay!r}.")
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights of ``model``."""
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().to(self.shadow[name].dtype), 1.0 - self.decay)

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
        """The averaged parameters by name (the decay is a flag of the run, not state)."""
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
