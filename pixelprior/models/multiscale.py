"""Multi-scale prior (the multi-scale PixelRNN of [1], section 3.5): a small image, then the full one given it.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
    https://arxiv.org/abs/1601.06759

Two priors model an ``H x W`` image ``x`` (``C`` channels, ``num_values`` values):

* ``small``, unconditional (in space), over the subsampled image ``s = x[:, :, ::fh, ::fw]`` of ``h x w`` pixels
  (``fh = H / h``, ``fw = W / w``): the top-left pixel of every ``fh x fw`` block;
* ``big``, over the ``H x W`` grid, conditioned on ``s`` through its spatial condition: ``cond`` is ``s`` as network
  input (:func:`~pixelprior.distributions.bins_to_input`, ``C`` maps), which the big prior resizes to its grid
  (nearest: every pixel of block ``(a, b)`` gets ``s[a, b]``) and adds to its layers through ``1 x 1``
  convolutions (:class:`~pixelprior.nn.ConditionBias`: the "biasing" of section 3.5).

**The likelihood.** ``s`` is part of ``x`` (its pixels at the subsample positions ``Q``), so the big prior only
models the other pixels:

    log p(x) = log p_small(s) + sum over positions q of x not in Q of log p_big(x_q | x_<q, s)

where ``x_<q`` are the pixels before ``q`` in raster order (those of ``Q`` among them). This is the exact
log-likelihood of a normalized distribution over ``H x W`` images: summing over ``x`` is summing over ``s`` and then
over the remaining pixels one position at a time in raster order, each conditional summing to 1. It is what
:meth:`MultiScalePrior.sample` draws from: ``s`` from the small prior, placed at ``Q``, then the other positions in
raster order by the big prior (the sampler's ``known`` / ``known_mask``). :meth:`~MultiScalePrior.bits_per_dim`
divides by ``C H W ln 2``: the same units as a single-scale prior of ``H x W`` images, so the two compare.

NOTE: unlike [1], where the conditional network generates all ``n x n`` pixels (the subsampled ones again, so that
``p(s) p(x | s)`` puts mass on images whose subsample differs from ``s``: not a normalized model of ``x``), the big
prior here skips the positions ``s`` fixes, so the two-part likelihood is exact. Its parameters at those positions
are computed (the network is convolutional) and unused.
NOTE: unlike [1], where a deconvolutional network builds the ``c x n x n`` conditioning map, ``s`` is resized to
the grid (nearest) and each layer's ``1 x 1`` condition convolution is the only learned upsampling; a pixel sees
the small image at its own block directly, and the other blocks through its recurrent or convolutional context.

A :class:`MultiScalePrior` is a plain composition (a ``torch.nn.Module`` holding the two priors), not a diffusers
model: :meth:`~MultiScalePrior.save_pretrained` writes each prior to its own folder (``small/`` and ``big/``, each
``config.json`` + safetensors) and :meth:`~MultiScalePrior.from_pretrained` reads them back.

Example:
    >>> from pixelprior import MultiScalePrior
    >>> model = MultiScalePrior.from_registry(
    ...     "pixelrnn_diagonal_bilstm_mnist", sample_size=28, small_size=7, hidden_channels=16, num_layers=2
    ... )
    >>> model.sample(2).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from ..distributions import bins_to_input
from ..distributions.base import Generator
from .modeling_prior import AutoregressivePrior
from .registry import create_prior

SMALL_FOLDER, BIG_FOLDER = "small", "big"


class MultiScalePrior(nn.Module):
    """An unconditional prior of a subsampled image and a prior of the full image conditioned on it.

    Args:
        small: prior of the ``h x w`` subsampled image; no spatial condition (``cond_channels=None``).
        big: prior of the ``H x W`` image, ``H = fh h`` and ``W = fw w`` for integers ``fh, fw``, spatially
            conditioned on the small image (``cond_channels = C``); same ``C`` and ``num_values``. Class-conditional
            models take the same ``num_classes`` in both (the labels go to both).

    Shapes:
        x: ``(B, C, H, W)`` long -> log_prob ``(B,)``; sample -> ``(B, C, H, W)`` long

    Raises:
        ValueError: if the two priors do not fit together as described.
    """

    def __init__(self, small: AutoregressivePrior, big: AutoregressivePrior) -> None:
        super().__init__()
        for name, prior in (("small", small), ("big", big)):
            if not isinstance(prior, AutoregressivePrior):
                raise ValueError(f"Expected {name} to be an AutoregressivePrior, got {type(prior).__name__}.")
        if small.cond_channels is not None:
            raise ValueError(
                f"Expected a small prior without spatial condition, got cond_channels={small.cond_channels}."
            )
        if (big.in_channels, big.num_values) != (small.in_channels, small.num_values):
            raise ValueError(
                f"Expected both priors to model the same values, got in_channels/num_values "
                f"{small.in_channels}/{small.num_values} (small) and {big.in_channels}/{big.num_values} (big)."
            )
        if big.cond_channels != small.in_channels:
            raise ValueError(
                f"Expected the big prior to be conditioned on the small image, cond_channels={small.in_channels}, got "
                f"{big.cond_channels}."
            )
        if big.num_classes != small.num_classes:
            raise ValueError(
                f"Expected the same num_classes in both priors, got {small.num_classes} (small) and "
                f"{big.num_classes} (big)."
            )
        (h, w), (H, W) = small.grid_size, big.grid_size
        if H % h or W % w:
            raise ValueError(f"Expected the big grid to be a multiple of the small one, got {(H, W)} and {(h, w)}.")
        self.small, self.big = small, big
        self.factors = (H // h, W // w)

    @classmethod
    def from_registry(
        cls, name: str, sample_size: int | tuple[int, int], small_size: int | tuple[int, int], **overrides: Any
    ) -> MultiScalePrior:
        """Both priors from the registered configuration ``name`` (see :func:`~pixelprior.create_prior`).

        Args:
            name: a registered prior.
            sample_size: ``H x W`` of the full image.
            small_size: ``h x w`` of the subsampled one (dividing ``sample_size``).
            overrides: further arguments of both priors.
        """
        if "cond_channels" in overrides:
            raise ValueError(
                "Expected no cond_channels: the small prior has none and the big one is conditioned on the small "
                f"image, got cond_channels={overrides['cond_channels']!r}."
            )
        small = create_prior(name, sample_size=small_size, cond_channels=None, **overrides)
        big = create_prior(name, sample_size=sample_size, cond_channels=small.in_channels, **overrides)
        return cls(small, big)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def grid_size(self) -> tuple[int, int]:
        return self.big.grid_size

    @property
    def in_channels(self) -> int:
        return self.big.in_channels

    @property
    def num_values(self) -> int:
        return self.big.num_values

    @property
    def num_classes(self) -> int | None:
        return self.big.num_classes

    # ------------------------------------------------------------------------------------------- the model
    def subsample(self, x: torch.Tensor) -> torch.Tensor:
        """The small image: the top-left pixel of every ``fh x fw`` block.

        Shapes:
            x: ``(B, C, H, W)`` -> ``(B, C, h, w)``
        """
        fh, fw = self.factors
        return x[:, :, ::fh, ::fw]

    def condition(self, small: torch.Tensor) -> torch.Tensor:
        """The big prior's spatial condition from the small image: its values as network input.

        Shapes:
            small: ``(B, C, h, w)`` long -> ``(B, C, h, w)`` float of the big prior's dtype
        """
        return bins_to_input(small, self.num_values, dtype=self.big.dtype)

    def free_positions(self) -> torch.Tensor:
        """Positions the big prior models: True everywhere but at the subsample.

        Shapes:
            -> ``(H, W)`` bool
        """
        fh, fw = self.factors
        free = torch.ones(self.grid_size, dtype=torch.bool, device=self.big.device)
        free[::fh, ::fw] = False
        return free

    def log_prob(self, x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood of each ``H x W`` image in nats: ``log p_small(s) + log p_big(rest | s)``.

        Shapes:
            x: ``(B, C, H, W)`` (or ``(B, H, W)`` when ``C = 1``) -> ``(B,)``
        """
        x = self.big.check_x(x)
        small = self.subsample(x)
        params = self.big(x, class_labels=class_labels, cond=self.condition(small))  # (B, P, H, W)
        per_position = self.big.position_log_prob(params, x)  # (B, H, W)
        rest = (per_position * self.free_positions()).flatten(1).sum(1)
        return self.small.log_prob(small, class_labels=class_labels) + rest

    def bits_per_dim(self, x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``-log_prob / (C H W ln 2)``.

        Shapes:
            x: ``(B, C, H, W)`` -> ``(B,)``
        """
        num_dims = self.in_channels * self.grid_size[0] * self.grid_size[1]
        return -self.log_prob(x, class_labels) / (num_dims * math.log(2.0))

    def loss(self, x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Mean bits per dimension of the batch.

        Shapes:
            x: ``(B, C, H, W)`` -> ``()``
        """
        return self.bits_per_dim(x, class_labels).mean()

    def forward(self, x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The loss (mean bits per dimension), so that the composition trains like one model."""
        return self.loss(x, class_labels)

    @torch.no_grad()
    def sample(
        self,
        batch_size: int | None = None,
        *,
        class_labels: torch.Tensor | int | None = None,
        temperature: float = 1.0,
        generator: Generator = None,
        use_cache: bool = True,
        progress: bool = False,
    ) -> torch.Tensor:
        """Draw the small image, then the full one given it (see :meth:`AutoregressivePrior.sample`).

        Both stages draw from ``generator`` in turn.

        Returns:
            ``(B, C, H, W)`` long whose subsample is the drawn small image.
        """
        kwargs = dict(temperature=temperature, generator=generator, use_cache=use_cache, progress=progress)
        small = self.small.sample(batch_size, class_labels=class_labels, **kwargs)  # (B, C, h, w)
        B, (H, W) = small.shape[0], self.grid_size
        known = torch.zeros(B, self.in_channels, H, W, dtype=torch.long, device=small.device)
        fh, fw = self.factors
        known[:, :, ::fh, ::fw] = small
        known_mask = ~self.free_positions().expand(B, 1, H, W)
        return self.big.sample(
            class_labels=class_labels, cond=self.condition(small), known=known, known_mask=known_mask, **kwargs
        )

    # ------------------------------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``small/`` and ``big/`` under ``save_directory`` (each ``config.json`` + safetensors)."""
        for folder, prior in ((SMALL_FOLDER, self.small), (BIG_FOLDER, self.big)):
            prior.save_pretrained(os.path.join(save_directory, folder), safe_serialization=True, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> MultiScalePrior:
        """Read a composition written by :meth:`save_pretrained`; ``kwargs`` go to both priors' loaders."""
        path = str(pretrained_model_name_or_path)
        small = AutoregressivePrior.from_pretrained(path, subfolder=SMALL_FOLDER, **kwargs)
        big = AutoregressivePrior.from_pretrained(path, subfolder=BIG_FOLDER, **kwargs)
        return cls(small, big)
