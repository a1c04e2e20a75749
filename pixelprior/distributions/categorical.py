"""Categorical likelihood: a softmax over ``num_values`` for every channel of every position.

Serves 8-bit pixels (``num_values = 256``), binary images (2), n-bit images (``2**n``) and VQ-VAE codes
(``K``) alike. With ``C > 1`` channels the channels of a pixel are ordered R -> G -> B: the logits of
channel ``c`` are computed by feature maps of channel group ``c`` (see :mod:`pixelprior.nn.masks`), which see
only channels ``< c`` of their own pixel, so the sampler draws one channel per network evaluation.

Parameter layout (einops letters: ``c`` data channel, ``k`` value):
``params`` is ``(B, (c k), H, W)``: the ``num_values`` logits of channel ``c`` are maps
``c * num_values .. (c + 1) * num_values - 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .base import Likelihood


class CategoricalLikelihood(Likelihood):
    """Per-channel softmax over ``num_values`` values, channels ordered R -> G -> B within a pixel.

    Args:
        in_channels: data channels ``C``.
        num_values: values per channel ``K``.
    """

    def __init__(self, in_channels: int, num_values: int) -> None:
        super().__init__(in_channels, num_values)
        self.channel_steps = tuple((c,) for c in range(in_channels))

    @property
    def num_params(self) -> int:
        return self.in_channels * self.num_values

    def param_groups(self) -> torch.Tensor:
        return torch.arange(self.num_params) // self.num_values

    def logits(self, params: torch.Tensor) -> torch.Tensor:
        """Split the parameter maps into per-channel logits.

        Shapes:
            params: ``(B, (c k), ...)`` -> ``(B, c, k, ...)``
        """
        return params.unflatten(1, (self.in_channels, self.num_values))

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(self.logits(params), dim=2)  # (B, C, K, H, W)
        picked = logp.gather(2, x.unsqueeze(2)).squeeze(2)  # (B, C, H, W)
        return picked.sum(1)

    def channel_log_pmf(self, params: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor:
        # The network already conditioned this channel's logits on the earlier channels (channel_steps): x is unused.
        return F.log_softmax(self.logits(params)[:, channel].double(), dim=-1)  # (B, K)

    def uniform_count(self, channels: tuple[int, ...]) -> int:
        return len(channels)

    def sample_from(
        self, params: torch.Tensor, x: torch.Tensor, channels: tuple[int, ...], temperature: float, u: torch.Tensor
    ) -> torch.Tensor:
        logits = self.logits(params)[:, list(channels)] / temperature  # (B, n, K)
        probs = torch.softmax(logits, dim=-1)
        cdf = probs.cumsum(-1)
        # Inverse CDF: the first value whose cumulative probability exceeds u (scaled by the total so that
        # rounding in the cumsum can never push u past the last bin).
        target = rearrange(u, "b n -> b n 1") * cdf[..., -1:]
        return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=self.num_values - 1)
