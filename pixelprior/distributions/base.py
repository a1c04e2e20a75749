"""The likelihood interface every distribution implements, and the one source of random draws.

A likelihood owns the layout of the network output (``num_params`` parameter maps per position), the
log-likelihood the loss reads, and the sampler the sampling loop reads: nothing else slices network
outputs, so the loss and the sampler cannot drift apart.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

Generator = torch.Generator | Sequence[torch.Generator] | None


def uniform(shape: Sequence[int], generator: Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Uniform draws in ``[0, 1)`` of ``shape``, reproducible through ``generator``.

    ``generator`` may be one ``torch.Generator`` or a list of ``shape[0]`` generators, one per sample (as
    diffusers pipelines take them), so that sample ``b`` only depends on generator ``b``.

    Shapes:
        -> ``shape``
    """
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"Expected {shape[0]} generators (one per sample), got {len(generator)}.")
        draws = [_uniform(tuple(shape[1:]), g, device, dtype) for g in generator]
        return torch.stack(draws)
    return _uniform(tuple(shape), generator, device, dtype)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    # Draw on the generator's device (a CPU generator with a CUDA model stays reproducible), then move.
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


class Likelihood(abc.ABC):
    """A distribution over one grid position given the network's parameters for it.

    Args:
        in_channels: data channels ``C`` per position.
        num_values: values per channel.

    Attributes:
        channel_steps: the order in which the sampler draws a position's channels: a tuple of channel
            tuples; each entry is one network evaluation. ``((0,), (1,), (2,))`` draws R, then G given R,
            then B given R and G (the network is re-run in between); ``((0, 1, 2),)`` draws all channels
            jointly from one set of parameters.
    """

    channel_steps: tuple[tuple[int, ...], ...]

    def __init__(self, in_channels: int, num_values: int) -> None:
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"Expected in_channels to be an int >= 1, got {in_channels!r}.")
        if not isinstance(num_values, int) or num_values < 2:
            raise ValueError(f"Expected num_values to be an int >= 2, got {num_values!r}.")
        self.in_channels = in_channels
        self.num_values = num_values

    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Parameter maps per position: the only place this count is computed."""

    @abc.abstractmethod
    def param_groups(self) -> torch.Tensor:
        """``(num_params,)`` channel group of each parameter map, for the output layer's channel mask.

        A parameter in group ``c`` may depend on data channels ``< c`` of its own pixel.
        """

    @abc.abstractmethod
    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each position, summed over its channels, in nats.

        Shapes:
            params: ``(B, num_params, H, W)``, x: ``(B, C, H, W)`` long -> ``(B, H, W)``
        """

    @abc.abstractmethod
    def channel_log_pmf(self, params: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor:
        """Log-probability of every value of one channel of a position, given the values of its earlier channels.

        What a lossless coder reads: the channels of a position are coded one at a time, in order, each from this
        pmf, and the sum over the channels of the log-pmf at the true values is :meth:`log_prob` at that position
        (a test holds this). Computed in float64 whatever the dtype of ``params``, so that the pmf is as close to
        the model's as the network output allows; both sides of a code compute it from the same parameters.

        Args:
            params: ``(B, num_params)`` the network output at the position.
            x: ``(B, C)`` long, the position's values; only channels ``< channel`` are read.
            channel: the channel whose pmf is wanted.

        Returns:
            ``(B, num_values)`` float64 log-probabilities in nats.
        """

    def sample(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        channels: tuple[int, ...],
        temperature: float = 1.0,
        generator: Generator = None,
    ) -> torch.Tensor:
        """Draw ``channels`` of one position.

        Args:
            params: ``(B, num_params)`` the network output at the position.
            x: ``(B, C)`` long, the position's values drawn so far (channels before ``channels``).
            channels: one entry of :attr:`channel_steps`.
            temperature: > 0; divides the logits (1 is the model's distribution).
            generator: a generator or one per sample.

        Returns:
            ``(B, len(channels))`` long.
        """
        u = uniform((params.shape[0], self.uniform_count(channels)), generator, params.device, params.dtype)
        return self.sample_from(params, x, channels, temperature, u)

    @abc.abstractmethod
    def uniform_count(self, channels: tuple[int, ...]) -> int:
        """How many uniform draws per sample :meth:`sample` takes for ``channels``."""

    @abc.abstractmethod
    def sample_from(
        self, params: torch.Tensor, x: torch.Tensor, channels: tuple[int, ...], temperature: float, u: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`sample` given its uniform draws ``u`` (drawn outside, so that a compiled sampling step gets the
        generator's numbers, in the order of :meth:`sample`).

        Shapes:
            params: ``(B, num_params)``, x: ``(B, C)`` long, u: ``(B, uniform_count(channels))`` ->
            ``(B, len(channels))`` long
        """
