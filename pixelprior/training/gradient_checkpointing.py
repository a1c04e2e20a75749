"""Gradient (activation) checkpointing for training: the prior's own ``enable_gradient_checkpointing``.

The mechanism lives with the models (:meth:`pixelprior.models.AutoregressivePrior._set_gradient_checkpointing`, behind
diffusers' ``enable_gradient_checkpointing()``); this function is the trainer's earlier entry point to it.
"""

from __future__ import annotations

from torch import nn

from ..models import AutoregressivePrior


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """``model.enable_gradient_checkpointing()``; returns how many blocks are checkpointed.

    Raises:
        ValueError: when ``model`` is not a prior (it keeps no blocks in an ``nn.ModuleList`` checkpointing knows).
    """
    if not isinstance(model, AutoregressivePrior):
        raise ValueError(
            f"Expected a pixelprior prior, which keeps its blocks in nn.ModuleLists for gradient checkpointing, got "
            f"{type(model).__name__}."
        )
    model.enable_gradient_checkpointing()
    return sum(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
