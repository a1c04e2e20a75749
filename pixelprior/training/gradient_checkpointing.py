"""Gradient (activation) checkpointing for any prior: recompute each repeated block in the backward pass.

Every architecture keeps its repeated blocks in ``nn.ModuleList``s (``blocks``, ``layers``, PixelCNN++'s stages,
PixelSNAIL's blocks...). :func:`enable_gradient_checkpointing` makes the forward of each such block run under
:func:`torch.utils.checkpoint.checkpoint` when gradients are being recorded: its activations are dropped after the
forward pass and recomputed during the backward pass, trading about one extra forward for the memory of all but the
blocks' inputs. The RNG state is replayed, so dropout draws the same masks and the gradients are unchanged.
Nothing is renamed: the state dict, saving and the cached sampler are unaffected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_MARK = "_pixelprior_checkpointed_forward"


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Checkpoint the outermost elements of every ``nn.ModuleList`` of ``model``; returns how many blocks.

    Raises:
        ValueError: when the model keeps no blocks in a ``ModuleList`` (nothing to checkpoint).
    """
    count = 0

    def visit(module: nn.Module, in_list: bool) -> None:
        nonlocal count
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                visit(child, in_list=True)
            elif in_list:
                if not hasattr(child, _MARK):
                    child.forward = functools.partial(_checkpointed, child.forward)  # an instance attribute
                    setattr(child, _MARK, True)
                count += 1
            else:
                visit(child, in_list=False)

    visit(model, in_list=False)
    if count == 0:
        raise ValueError(
            f"Expected {type(model).__name__} to keep its blocks in an nn.ModuleList for gradient checkpointing, "
            "got none."
        )
    return count
