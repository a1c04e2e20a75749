"""The cached step of the priors over a raster *sequence* of values, one position per channel of a pixel.

:class:`~pixelprior.models.ImageGPT` and :class:`~pixelprior.models.ImageTransformer` read the image as the sequence
``t = (i W + j) C + c`` and compute the logits of position ``t`` from the values before it. The sampler, though,
asks for a whole pixel's parameters ``(B, C K)`` at each of its channel steps (``channel_steps`` of the
categorical likelihood: R, then G, then B). :class:`RasterSequenceStep` bridges the two once for both models.
"""

from __future__ import annotations

from typing import Any

import torch


class RasterSequenceStep:
    """Mixin: ``step(cache, h, i, j)`` of a prior over the raster sequence, from its ``_position(cache, h, t)``.

    The model's ``init_cache`` holds ``cache["length"]`` (positions committed so far, starting at 0) and
    ``cache["params"]`` (``(B, C K)``, the logits of the current pixel); ``_position`` runs position ``t`` through the
    network with its key/value caches and returns its ``(B, K)`` logits.

    At channel step ``c`` of pixel ``(i, j)``, channel ``c``'s input (the value of the position before it) is final;
    channels ``c + 1 .. C - 1`` are run on the canvas as it stands and redone by the next steps (their inputs are
    the values the sampler has not drawn yet); channels before ``c`` keep the logits of their own steps.
    """

    def _check_sequence_likelihood(self, likelihood: str) -> None:
        """Raise a ``ValueError`` unless ``likelihood == "categorical"``: one value per sequence position."""
        if likelihood != "categorical":
            raise ValueError(
                f"Expected likelihood='categorical': {type(self).__name__} predicts one value per sequence position "
                f"(a pixel's channels are separate positions), so a joint per-pixel likelihood does not apply; got "
                f"{likelihood!r}."
            )

    def step(self, cache: dict[str, Any], h: torch.Tensor, i: int, j: int) -> torch.Tensor:
        C, K, W = self.in_channels, self.num_values, self.grid_size[1]
        first = (i * W + j) * C  # position of channel 0 of pixel (i, j)
        c = cache["length"] - first  # the channel step the sampler is on
        if not 0 <= c < C:
            raise RuntimeError(
                f"Expected steps in raster order, {C} per pixel: got pixel ({i}, {j}) after {cache['length']} "
                f"committed positions."
            )
        for t in range(first + c, first + C):
            cache["params"][:, (t - first) * K : (t - first + 1) * K] = self._position(cache, h, t)
        cache["length"] = first + c + 1
        return cache["params"].clone()  # (B, C K)
