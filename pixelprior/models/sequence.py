"""The cached step of the priors over a raster *sequence* of values, one position per channel of a pixel.

:class:`~pixelprior.models.ImageGPT` and :class:`~pixelprior.models.ImageTransformer` read the image as the sequence
``t = (i W + j) C + c`` and compute the logits of position ``t`` from the values before it. The sampler, though,
asks for a whole pixel's parameters ``(B, C K)`` at each of its channel steps (``channel_steps`` of the
categorical likelihood: R, then G, then B). :class:`RasterSequenceStep` bridges the two once for both models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..nn.attention import KeyValueCache
from ..nn.stepping import Index, StepCache


@dataclass(kw_only=True)
class SequenceCache(StepCache):
    """Cached-sampling state of a prior over the raster sequence.

    Attributes:
        memory: each layer's keys and values, ``(B, n, T, d)``.
        params: ``(B, C K)``, the logits of the current pixel (channels before the current step keep their own).
        next_input: ``(B, D)``, the input embedding of the next pixel's first position: the embedded last channel of
            the last committed pixel (or the start of the sequence).
    """

    memory: list[KeyValueCache]
    params: torch.Tensor
    next_input: torch.Tensor


class RasterSequenceStep:
    """Mixin: the step protocol of a prior over the raster sequence, from the model's ``_position(cache, x, t)``
    (position ``t`` through the network with its key/value caches, from its input embedding ``x``: its ``(B, K)``
    logits) and ``_embed(value, channel)`` (the input embedding of a value of ``channel``).

    At channel step ``c`` of pixel ``(i, j)`` channel ``c``'s input (the value of the position before it) is final;
    channels ``c + 1 .. C - 1`` are run on the pixel's values as they stand and redone by the next steps (their inputs
    are values not drawn yet); channels before ``c`` keep the logits of their own steps.
    """

    def _check_sequence_likelihood(self, likelihood: str) -> None:
        """Raise a ``ValueError`` unless ``likelihood == "categorical"``: one value per sequence position."""
        if likelihood != "categorical":
            raise ValueError(
                f"Expected likelihood='categorical': {type(self).__name__} predicts one value per sequence position "
                f"(a pixel's channels are separate positions), so a joint per-pixel likelihood does not apply; got "
                f"{likelihood!r}."
            )

    def forward_step(
        self, cache: SequenceCache, pixel: torch.Tensor, i: Index, j: Index, step: int, variant: None
    ) -> torch.Tensor:
        C, K, W = self.in_channels, self.num_values, self.grid_size[1]
        first = (i * W + j) * C  # position of channel 0 of pixel (i, j)
        for c in range(step, C):
            x = cache.next_input if c == 0 else self._embed(pixel[:, c - 1], c - 1)  # value t - 1
            cache.params[:, c * K : (c + 1) * K] = self._position(cache, x, first + c)
        return cache.params.clone()  # (B, C K)

    def commit(self, cache: SequenceCache, pixel: torch.Tensor, i: Index, j: Index) -> None:
        C = self.in_channels
        cache.next_input.copy_(self._embed(pixel[:, C - 1], C - 1))  # in place: static shapes and strides
