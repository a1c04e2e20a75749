"""Discretized logistic mixture likelihood of PixelCNN++ [1], for any number of channels and bit depth.

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with Discretized
    Logistic Mixture Likelihood and Other Modifications. ICLR 2017. https://arxiv.org/abs/1701.05517

Each pixel is a mixture of ``M`` components; under component ``m`` its channels are discretized logistics
whose means are coupled autoregressively (channel ``c`` reads the values of channels ``< c`` of the same
pixel, eq. 3 of [1]), so all channels of a pixel come from one set of parameters and are drawn jointly.

Values live on the network-input scale: bin ``k`` of ``K = num_values`` sits at
``v_k = 2 k / (K - 1) - 1`` (:func:`~pixelprior.distributions.quantization.bins_to_input`, the one
conversion); bins are ``2 / (K - 1)`` wide. The first and last bins carry the tails (``(-inf, v_0 + 1/(K-1)]``
and ``[v_{K-1} - 1/(K-1), inf)``).

Parameter layout (einops letters: ``m`` mixture, ``c`` channel, ``p`` channel pair ``c' < c``), per position:

* ``m``: mixture logits;
* ``(c m)``: means ``mu``;
* ``(c m)``: log scales ``log s``;
* ``(p m)``: coupling coefficients, ``tanh``-squashed, pairs in the order (1,0), (2,0), (2,1), (3,0), ...

so ``num_params = M (1 + 2 C + C (C - 1) / 2)`` (:attr:`LogisticMixtureLikelihood.num_params`, the only
place this formula lives): ``10 M`` for RGB, ``3 M`` for one channel.

Numerically safe branches of the reference implementation: log scales are floored at ``-7``; when a bin's
probability mass underflows (``< 1e-5``) the log density at the bin centre times the bin width is used.

NOTE: unlike [1], the edge bins are selected by their integer value rather than by thresholds on the
rescaled input, and the sampler couples channel ``c`` to the *discretized* values of earlier channels, the
same values the likelihood reads, so samples follow the likelihood exactly (the reference sampler couples
to the continuous draws).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Likelihood
from .quantization import bins_to_input, input_to_bins

LOG_SCALE_MIN = -7.0
MIN_BIN_MASS = 1e-5


class LogisticMixtureLikelihood(Likelihood):
    """Discretized mixture of logistics over ``num_values`` bins, channels of a pixel jointly.

    Args:
        in_channels: data channels ``C``.
        num_values: bins per channel ``K`` (256 for 8-bit images, ``2**n`` for n bits).
        num_mixtures: mixture components ``M``.
    """

    def __init__(self, in_channels: int, num_values: int, num_mixtures: int = 10) -> None:
        super().__init__(in_channels, num_values)
        if not isinstance(num_mixtures, int) or num_mixtures < 1:
            raise ValueError(f"Expected num_mixtures to be an int >= 1, got {num_mixtures!r}.")
        self.num_mixtures = num_mixtures
        self.channel_steps = (tuple(range(in_channels)),)
        # Channel pairs (c, c') with c' < c, in the order of the coefficient maps.
        self.pairs = [(c, d) for c in range(in_channels) for d in range(c)]

    @property
    def num_params(self) -> int:
        C, M = self.in_channels, self.num_mixtures
        return M * (1 + 2 * C + C * (C - 1) // 2)

    def param_groups(self) -> torch.Tensor:
        # Every parameter describes the whole pixel: none may see any channel of its own pixel.
        return torch.zeros(self.num_params, dtype=torch.long)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unpack the parameter maps.

        Shapes:
            params: ``(B, num_params, ...)`` -> logits ``(B, M, ...)``, means and log scales
            ``(B, C, M, ...)``, coefficients ``(B, P, M, ...)`` with ``P = C (C - 1) / 2``
        """
        C, M = self.in_channels, self.num_mixtures
        sizes = [M, C * M, C * M, len(self.pairs) * M]
        logits, means, log_scales, coeffs = torch.split(params, sizes, dim=1)
        means = means.unflatten(1, (C, M))
        log_scales = log_scales.unflatten(1, (C, M)).clamp(min=LOG_SCALE_MIN)
        coeffs = torch.tanh(coeffs.unflatten(1, (len(self.pairs), M)))
        return logits, means, log_scales, coeffs

    def _coupled_means(self, means: torch.Tensor, coeffs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Means of every channel given the values ``v`` of the earlier channels (eq. 3 of [1]).

        Shapes:
            means: ``(B, C, M, ...)``, coeffs: ``(B, P, M, ...)``, v: ``(B, C, 1, ...)`` -> ``(B, C, M, ...)``
        """
        shifted = [means[:, c] for c in range(self.in_channels)]
        for p, (c, d) in enumerate(self.pairs):
            shifted[c] = shifted[c] + coeffs[:, p] * v[:, d]
        return torch.stack(shifted, dim=1)

    def _bin_log_prob(self, bins: torch.Tensor, centred: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
        """Log-mass of bins under discretized logistics, with the edge bins' tails and the safe branches.

        Shapes:
            bins: integer bins, centred: ``v - mean`` at each bin's centre ``v``, log_scales (already floored): any
            shapes broadcasting together -> their broadcast shape
        """
        K = self.num_values
        inv_s = torch.exp(-log_scales)
        half_bin = 1.0 / (K - 1)
        plus_in = inv_s * (centred + half_bin)
        min_in = inv_s * (centred - half_bin)
        log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigmoid(plus_in): the first bin's mass
        log_one_minus_cdf_min = -F.softplus(min_in)  # log (1 - sigmoid(min_in)): the last bin's mass
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        mid_in = inv_s * centred
        log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)  # log density at the bin centre
        inner = torch.where(
            cdf_delta > MIN_BIN_MASS,
            torch.log(cdf_delta.clamp(min=1e-12)),
            log_pdf_mid + math.log(2.0 * half_bin),
        )
        return torch.where(bins == 0, log_cdf_plus, torch.where(bins == K - 1, log_one_minus_cdf_min, inner))

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, means, log_scales, coeffs = self.split(params)  # (B, M, H, W), (B, C, M, H, W), ...
        v = bins_to_input(x, self.num_values, dtype=params.dtype).unsqueeze(2)  # (B, C, 1, H, W)
        centred = v - self._coupled_means(means, coeffs, v)
        log_probs = self._bin_log_prob(x.unsqueeze(2), centred, log_scales)  # (B, C, M, H, W)
        joint = log_probs.sum(1) + F.log_softmax(logits, dim=1)  # (B, M, H, W)
        return torch.logsumexp(joint, dim=1)

    def channel_log_pmf(self, params: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor:
        """The exact conditional pmf of channel ``c`` given channels ``< c``: R, then G given R, then B given R and G.

        The mixture weights are reweighted by the earlier channels, ``w_m ∝ pi_m prod_{d < c} L_m(x_d)``, and
        ``p(x_c | x_<c) = sum_m w_m L_m(x_c | x_<c)``; the product over the channels telescopes to the joint
        :meth:`log_prob` of the pixel (each factor uses the same per-bin masses as :meth:`log_prob`).
        """
        K = self.num_values
        if not 0 <= channel < self.in_channels:
            raise ValueError(f"Expected a channel in [0, {self.in_channels}), got {channel!r}.")
        logits, means, log_scales, coeffs = self.split(params.double())  # (B, M), (B, C, M), (B, C, M), (B, P, M)
        v = bins_to_input(x, K, dtype=torch.float64).unsqueeze(2)  # (B, C, 1)
        coupled = self._coupled_means(means, coeffs, v)  # (B, C, M): channel c's means read channels < c only
        log_w = F.log_softmax(logits, dim=1)  # (B, M)
        for d in range(channel):
            log_w = log_w + self._bin_log_prob(x[:, d : d + 1], v[:, d] - coupled[:, d], log_scales[:, d])
        bins = torch.arange(K, device=params.device)  # (K,)
        centred = bins_to_input(bins, K, dtype=torch.float64) - coupled[:, channel].unsqueeze(-1)  # (B, M, K)
        log_l = self._bin_log_prob(bins, centred, log_scales[:, channel].unsqueeze(-1))  # (B, M, K)
        return torch.logsumexp(log_w.unsqueeze(-1) + log_l, dim=1) - torch.logsumexp(log_w, dim=1, keepdim=True)

    def uniform_count(self, channels: tuple[int, ...]) -> int:
        return 1 + self.in_channels  # the component, then one logistic draw per channel

    def sample_from(
        self, params: torch.Tensor, x: torch.Tensor, channels: tuple[int, ...], temperature: float, u: torch.Tensor
    ) -> torch.Tensor:
        """Draw all channels of a pixel jointly: one mixture component, then R, G given R, B given R and G.

        ``temperature`` divides the mixture logits and multiplies the logistic scales.
        """
        if tuple(channels) != self.channel_steps[0]:
            raise ValueError(f"Expected the channels {self.channel_steps[0]} to be drawn jointly, got {channels}.")
        K, C, M = self.num_values, self.in_channels, self.num_mixtures
        B = params.shape[0]
        logits, means, log_scales, coeffs = self.split(params)  # (B, M), (B, C, M), (B, C, M), (B, P, M)
        # u: 1 + C uniforms per pixel, the component, then one logistic draw per channel.
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum(-1)
        component = torch.searchsorted(cdf, u[:, :1] * cdf[:, -1:], right=True).clamp_(max=M - 1)  # (B, 1)
        pick = component.unsqueeze(1)  # (B, 1, 1)
        mu = means.gather(2, pick.expand(B, C, 1)).squeeze(2)  # (B, C)
        scale = torch.exp(log_scales.gather(2, pick.expand(B, C, 1)).squeeze(2)) * temperature
        coeff = coeffs.gather(2, pick.expand(B, coeffs.shape[1], 1)).squeeze(2) if self.pairs else coeffs[..., 0]
        # Keep u strictly inside (0, 1) so that the logistic quantile is finite.
        eps = torch.finfo(params.dtype).eps
        noise = torch.logit(u[:, 1:].clamp(eps, 1 - eps))  # (B, C) standard logistic draws
        out = torch.empty(B, C, dtype=torch.long, device=params.device)
        values = torch.empty(B, C, dtype=params.dtype, device=params.device)
        for c in range(C):
            mean = mu[:, c]
            for p, (cc, d) in enumerate(self.pairs):
                if cc == c:
                    mean = mean + coeff[:, p] * values[:, d]
            y = mean + scale[:, c] * noise[:, c]  # continuous draw on the [-1, 1] scale
            out[:, c] = input_to_bins(y, K)
            values[:, c] = bins_to_input(out[:, c], K, dtype=params.dtype)
        return out
