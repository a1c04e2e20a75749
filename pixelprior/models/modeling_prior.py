"""The autoregressive-prior base class every pixelprior model derives from.

A prior is a likelihood model over a grid of discrete values ``x`` of shape ``(B, C, H, W)`` with values in
``[0, num_values)``: raw pixels (256 levels, binary, n-bit) or the codes of a VQ-VAE (``C = 1``, ``K``
values; a ``(B, H, W)`` grid is accepted). It factorizes ``p(x)`` in raster order, R -> G -> B within a pixel
where the likelihood orders channels.

Subclasses declare their constructor under ``@register_to_config`` and implement the network and, for cached
sampling (see :mod:`pixelprior.sampling`), its incremental version:

* ``compute_params(h, class_labels, cond)``: the network, teacher-forced on the encoded input ``h``;
* ``init_cache(batch_size, class_labels, cond)``: the typed state of cached sampling (a
  :class:`~pixelprior.nn.stepping.StepCache` dataclass: layer buffers, frozen weights, conditioning), allocated
  with static shapes;
* ``forward_step(cache, pixel, i, j, step, variant)``: the network at one position, from the position's values drawn
  so far (``pixel``, encoded) and what the cache holds of the positions before it: the parameters there;
* optionally ``commit(cache, pixel, i, j)`` (position ``(i, j)`` is final, with these values) and
  ``commit_row(cache, i, variant)`` (row ``i`` is final), for layers that read only final positions (an input copy
  of the canvas, a vertical stack, attention keys), and ``step_variant(i, j)`` / ``row_variant(i)`` where the static
  structure of a step depends on the position (PixelCNN++'s low-resolution stages).

:meth:`AutoregressivePrior.step` drives the protocol: it keeps the cache's
:class:`~pixelprior.nn.stepping.RasterCursor` (the one record of which positions are final) and calls the hooks; no
model works that out from ``(i, j)`` itself.
Positions are python ints in eager sampling and 0-d tensors in the compiled step, so a ``forward_step`` indexes
through :mod:`pixelprior.nn.stepping` and does not branch on them.

Everything a user calls (``forward``, ``log_prob``, ``bits_per_dim``, ``loss``, ``sample``) lives here and
validates its inputs at the boundary.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Hashable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..distributions import Likelihood, bins_to_input, get_likelihood
from ..distributions.base import Generator
from ..nn.stepping import Index, RasterCursor, StepCache
from ..sampling import sample as _sample

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _grid(sample_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(sample_size, int) and not isinstance(sample_size, bool):
        size = (sample_size, sample_size)
    elif isinstance(sample_size, (tuple, list)) and len(sample_size) == 2:
        size = (sample_size[0], sample_size[1])
    else:
        raise ValueError(f"Expected sample_size to be an int or (H, W), got {sample_size!r}.")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise ValueError(f"Expected positive integer sample_size, got {sample_size!r}.")
    return size


class AutoregressivePrior(ModelMixin, ConfigMixin):
    """Base class of the autoregressive priors: likelihoods, losses and sampling over a discrete grid.

    Subclasses call :meth:`_init_prior` first in their ``__init__``.

    Attributes:
        distribution: the :class:`~pixelprior.distributions.Likelihood` that owns the output layout.
        grid_size: ``(H, W)``.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    # ----------------------------------------------------------------------------------------- setup
    def _init_prior(
        self,
        sample_size: int | tuple[int, int],
        in_channels: int,
        num_values: int,
        num_classes: int | None,
        cond_channels: int | None,
        likelihood: str,
        num_mixtures: int | None = None,
    ) -> None:
        self.grid_size = _grid(sample_size)
        for name, value in (("num_classes", num_classes), ("cond_channels", cond_channels)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Expected {name} to be None or an int >= 1, got {value!r}.")
        # The mixture size only means something to the logistic mixture; other likelihoods ignore it.
        extra = {"num_mixtures": num_mixtures} if likelihood == "logistic_mixture" and num_mixtures else {}
        self.distribution: Likelihood = get_likelihood(likelihood, in_channels, num_values, **extra)

    # diffusers' dtype/device walk every submodule; the sampler asks once per step, so read the first parameter
    # (a prior keeps all its parameters in one dtype, on one device).
    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def in_channels(self) -> int:
        return self.distribution.in_channels

    @property
    def num_values(self) -> int:
        return self.distribution.num_values

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    @property
    def cond_channels(self) -> int | None:
        return self.config.cond_channels

    # ------------------------------------------------------------------------ gradient checkpointing
    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func: Callable[..., Any] | None = None
    ) -> None:
        """Gradient (activation) checkpointing of every repeated block (diffusers' ``enable_gradient_checkpointing`` /
        ``disable_gradient_checkpointing`` call it).

        Every architecture keeps its repeated blocks in ``nn.ModuleList``s (``blocks``, ``layers``, PixelCNN++'s
        stages...): each of them runs under ``gradient_checkpointing_func(block, *args)`` (default
        :func:`torch.utils.checkpoint.checkpoint`, non-reentrant) when gradients are being recorded, so that its
        activations are dropped after the forward pass and recomputed in the backward pass. The RNG state is replayed
        (dropout draws the same masks): the gradients are those without checkpointing. Nothing is renamed: the state
        dict, saving and cached sampling are unaffected.

        Raises:
            ValueError: when the model keeps no blocks in a ``ModuleList``.
        """
        blocks = _repeated_blocks(self)
        if not blocks:
            raise ValueError(
                f"Expected {type(self).__name__} to keep its blocks in an nn.ModuleList for gradient checkpointing, "
                "got none."
            )
        for block in blocks:
            if enable:
                _checkpoint_block(block, gradient_checkpointing_func or _checkpoint)
            else:
                block.__dict__.pop("forward", None)  # the class's forward again
                block.gradient_checkpointing = False

    # -------------------------------------------------------------------------- subclass interface
    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """Bins -> network input; works on any spatial extent (the sampler encodes single pixels).

        Shapes:
            x: ``(B, C, h, w)`` long -> ``(B, C, h, w)`` float of the model's dtype
        """
        return bins_to_input(x, self.num_values, dtype=self.dtype)

    def compute_params(
        self, h: torch.Tensor, class_labels: torch.Tensor | None, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """The network: distribution parameters of every position, teacher-forced.

        Shapes:
            h: ``(B, C, H, W)`` encoded input, class_labels: ``(B,)``, cond: ``(B, cond_channels, H, W)``
            -> ``(B, num_params, H, W)``
        """
        raise NotImplementedError

    def init_cache(self, batch_size: int, class_labels: torch.Tensor | None, cond: torch.Tensor | None) -> StepCache:
        """State for cached sampling: empty layer buffers, frozen weights and precomputed conditioning."""
        raise NotImplementedError(f"{type(self).__name__} has no cached sampling path; use use_cache=False.")

    def forward_step(
        self, cache: StepCache, pixel: torch.Tensor, i: Index, j: Index, step: int, variant: Hashable
    ) -> torch.Tensor:
        """The network at position ``(i, j)``, channel step ``step``: what ``compute_params`` gives there.

        Every position before ``(i, j)`` has been committed (:meth:`commit`, :meth:`commit_row`); ``pixel`` holds the
        position's values drawn so far (the channels of the earlier steps; the others are not final and the
        parameters of the channels being drawn must not depend on them). ``variant`` is :meth:`step_variant`'s.

        Shapes:
            pixel: ``(B, E)`` encoded -> ``(B, num_params)``
        """
        raise NotImplementedError(f"{type(self).__name__} has no cached sampling path; use use_cache=False.")

    def commit(self, cache: StepCache, pixel: torch.Tensor, i: Index, j: Index) -> None:
        """Position ``(i, j)`` is final, with the values ``pixel`` (called before any later position's step).

        Shapes:
            pixel: ``(B, E)`` encoded
        """

    def commit_row(self, cache: StepCache, i: Index, variant: Hashable) -> None:
        """Row ``i`` is final (after the commit of its last position); ``variant`` is :meth:`row_variant`'s."""

    def step_variant(self, i: int, j: int) -> Hashable:
        """The static structure of :meth:`forward_step` at ``(i, j)`` (``None``: the same at every position)."""
        return None

    def row_variant(self, i: int) -> Hashable:
        """The static structure of :meth:`commit_row` of row ``i`` (``None``: the same for every row)."""
        return None

    def step(self, cache: StepCache, h: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Parameters at position ``(i, j)`` from the cache and the encoded canvas.

        Called in raster order, once per entry of ``distribution.channel_steps`` at each position, with ``h``
        holding every value drawn so far. Equals ``compute_params(h, ...)[:, :, i, j]``. The driver of the step
        protocol: the cache's cursor says which positions have become final, and the model's hooks are told.

        Shapes:
            h: ``(B, E, H, W)`` -> ``(B, num_params)``

        Raises:
            ValueError: for a step out of raster order.
        """
        if cache.cursor is None:
            cache.cursor = RasterCursor(self.grid_size[1], len(self.distribution.channel_steps))
        visit = cache.cursor.advance(i, j)
        if visit.final is not None:
            fi, fj = visit.final
            self.commit(cache, h[:, :, fi, fj], fi, fj)
        if visit.row_done is not None:
            self.commit_row(cache, visit.row_done, self.row_variant(visit.row_done))
        return self.forward_step(cache, h[:, :, i, j], i, j, visit.step, self.step_variant(i, j))

    # ------------------------------------------------------------------------------ validation
    def check_x(self, x: Any, name: str = "x") -> torch.Tensor:
        """Validate a grid of values and return it as ``(B, C, H, W)`` long on the model's device."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"Expected {name} to be a torch.Tensor of integer values, got {type(x).__name__}.")
        if x.dtype not in _INTEGER_DTYPES:
            raise ValueError(
                f"Expected {name} to hold integer values in [0, {self.num_values}) (dtype long or uint8), "
                f"got dtype {x.dtype}. Quantize float images with pixelprior.distributions.images_to_bins."
            )
        C, (H, W) = self.in_channels, self.grid_size
        if x.ndim == 3 and C == 1:
            x = x.unsqueeze(1)
        if x.ndim != 4 or tuple(x.shape[1:]) != (C, H, W):
            expected = f"(B, {C}, {H}, {W})" + (f" or (B, {H}, {W})" if C == 1 else "")
            raise ValueError(f"Expected {name} of shape {expected}, got {tuple(x.shape)}.")
        if x.numel():
            lo, hi = _value_range(x)
            if lo < 0 or hi >= self.num_values:
                raise ValueError(f"Expected {name} values in [0, {self.num_values}), got values in [{lo}, {hi}].")
        return x.to(device=self.device, dtype=torch.long)

    def check_conditioning(
        self, batch_size: int, class_labels: Any = None, cond: Any = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Validate class labels and the spatial condition; resize ``cond`` to the grid (nearest).

        Returns:
            ``class_labels`` ``(B,)`` long or ``None``; ``cond`` ``(B, cond_channels, H, W)`` or ``None``.
        """
        num_classes, cond_channels = self.num_classes, self.cond_channels
        if num_classes is None:
            if class_labels is not None:
                raise ValueError("Expected no class_labels: this model is not class-conditional (num_classes=None).")
        else:
            if class_labels is None:
                raise ValueError(
                    f"Expected class_labels of shape ({batch_size},): this model has {num_classes} classes."
                )
            if isinstance(class_labels, int):
                class_labels = torch.full((batch_size,), class_labels)
            elif not isinstance(class_labels, torch.Tensor):
                class_labels = torch.as_tensor(class_labels)
            if class_labels.dtype not in _INTEGER_DTYPES or tuple(class_labels.shape) != (batch_size,):
                raise ValueError(
                    f"Expected integer class_labels of shape ({batch_size},), got dtype {class_labels.dtype} and "
                    f"shape {tuple(class_labels.shape)}."
                )
            if class_labels.numel():
                lo, hi = _value_range(class_labels)
                if lo < 0 or hi >= num_classes:
                    raise ValueError(f"Expected class_labels in [0, {num_classes}), got values in [{lo}, {hi}].")
            class_labels = class_labels.to(device=self.device, dtype=torch.long)
        if cond_channels is None:
            if cond is not None:
                raise ValueError("Expected no cond: this model is not spatially conditioned (cond_channels=None).")
        else:
            if not isinstance(cond, torch.Tensor):
                raise ValueError(
                    f"Expected cond to be a float tensor of shape ({batch_size}, {cond_channels}, h, w), got "
                    f"{type(cond).__name__}."
                )
            if (
                not torch.is_floating_point(cond)
                or cond.ndim != 4
                or tuple(cond.shape[:2]) != (batch_size, cond_channels)
            ):
                raise ValueError(
                    f"Expected cond to be a float tensor of shape ({batch_size}, {cond_channels}, h, w), got dtype "
                    f"{cond.dtype} and shape {tuple(cond.shape)}."
                )
            if cond.numel() and not bool(torch.isfinite(cond).all()):
                raise ValueError("Expected a finite cond, got NaN or infinite values in it.")
            cond = cond.to(device=self.device, dtype=self.dtype)
            if tuple(cond.shape[-2:]) != self.grid_size:
                cond = F.interpolate(cond, size=self.grid_size, mode="nearest")
        return class_labels, cond

    # ---------------------------------------------------------------------------- public API
    def forward(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced distribution parameters of every position.

        Shapes:
            x: ``(B, C, H, W)`` (or ``(B, H, W)`` when ``C = 1``) -> ``(B, num_params, H, W)``
        """
        x = self.check_x(x)
        class_labels, cond = self.check_conditioning(x.shape[0], class_labels, cond)
        return self.compute_params(self.encode_input(x), class_labels, cond)

    def log_prob(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Exact log-likelihood of each image, in nats.

        Shapes:
            x: ``(B, C, H, W)`` -> ``(B,)``
        """
        x = self.check_x(x)
        class_labels, cond = self.check_conditioning(x.shape[0], class_labels, cond)
        return self.validated_log_prob(x, class_labels, cond)

    def validated_log_prob(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`log_prob` of inputs already checked by :meth:`check_x` and :meth:`check_conditioning`.

        The network and the likelihood with no host read-back: ``torch.compile`` traces it as one graph for every
        registered prior (a test holds this; the checks, which read the value range back, run before it).

        Shapes:
            x: ``(B, C, H, W)`` long -> ``(B,)``
        """
        return self.validated_log_prob_map(x, class_labels, cond).flatten(1).sum(1)

    def log_prob_map(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-pixel log-likelihood in nats (the channels of a pixel summed), each pixel given the pixels before it.

        It sums exactly to :meth:`log_prob` (the same floats, summed the same way): ``log_prob_map(x).flatten(1)
        .sum(1)`` is ``log_prob(x)``. Per-pixel bits are ``-log_prob_map(x) / ln 2``.

        Shapes:
            x: ``(B, C, H, W)`` -> ``(B, H, W)``
        """
        x = self.check_x(x)
        class_labels, cond = self.check_conditioning(x.shape[0], class_labels, cond)
        return self.validated_log_prob_map(x, class_labels, cond)

    def validated_log_prob_map(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`log_prob_map` of inputs already checked (see :meth:`validated_log_prob`).

        Shapes:
            x: ``(B, C, H, W)`` long -> ``(B, H, W)``
        """
        params = self.compute_params(self.encode_input(x), class_labels, cond)
        return self.position_log_prob(params, x)

    def position_log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Log-probability of each position's values under the network's ``params``, in nats.

        The likelihood runs in at least float32 with autocast off: under ``bf16`` / ``fp16`` mixed precision the
        network runs in half precision but log-softmaxes and log-sums of mixtures do not, so the loss and the reported
        bits/dim keep their precision (bfloat16 alone has 3 significant digits: 8.03 bits/dim would read 8.0).

        Shapes:
            params: ``(B, P, H, W)``, x: ``(B, C, H, W)`` long -> ``(B, H, W)``
        """
        if params.dtype in (torch.float16, torch.bfloat16):
            params = params.float()
        with torch.autocast(device_type=params.device.type, enabled=False):
            return self.distribution.log_prob(params, x)

    def bits_per_dim(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Negative log-likelihood per dimension in bits: ``-log_prob / (C H W ln 2)``.

        Shapes:
            x: ``(B, C, H, W)`` -> ``(B,)``
        """
        num_dims = self.in_channels * self.grid_size[0] * self.grid_size[1]
        return -self.log_prob(x, class_labels, cond) / (num_dims * math.log(2.0))

    def loss(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean bits per dimension of the batch: what training minimizes.

        Shapes:
            x: ``(B, C, H, W)`` -> ``()``
        """
        return self.bits_per_dim(x, class_labels, cond).mean()

    def sample(
        self,
        batch_size: int | None = None,
        *,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: Generator = None,
        use_cache: bool = True,
        compile: bool | str | dict[str, Any] = False,
        cuda_graphs: bool = False,
        progress: bool = False,
        row_callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Draw images in raster order (see :func:`pixelprior.sampling.sample`).

        Args:
            batch_size: number of images; inferred from the conditioning or ``known`` when ``None``.
            class_labels: ``(B,)`` labels (an int is broadcast) for class-conditional models.
            cond: ``(B, cond_channels, h, w)`` spatial condition.
            known: ``(B, C, H, W)`` values to keep where ``known_mask`` is True (completion / inpainting).
            known_mask: bool, ``(B, C, H, W)``, ``(B, 1, H, W)`` or ``(B, H, W)``; True = keep.
            temperature: finite and > 0, divides the logits.
            generator: a ``torch.Generator`` or a list of one per sample.
            use_cache: the fast incremental path (default) or the plain reference loop.
            compile: run the cached step compiled with ``torch.compile`` (once per model and step variant; the
                same samples in float64); a dict is ``torch.compile``'s keyword arguments (``backend``, ``mode``);
                ``"reduce-overhead"`` is ``compile=True, cuda_graphs=True``.
            cuda_graphs: with ``compile`` on a CUDA device, replay each compiled step from a CUDA graph (captured
                in every call, once per step variant): one launch per step instead of one per kernel.
            progress: show a progress bar.
            row_callback: ``row_callback(i, x)`` is called once row ``i`` is complete, with the grid drawn so far.

        Raises:
            ValueError: for bad arguments, and when the distribution parameters of a step are not finite.

        Returns:
            ``(B, C, H, W)`` long.
        """
        return _sample(
            self,
            batch_size,
            class_labels=class_labels,
            cond=cond,
            known=known,
            known_mask=known_mask,
            temperature=temperature,
            generator=generator,
            use_cache=use_cache,
            compile=compile,
            cuda_graphs=cuda_graphs,
            progress=progress,
            row_callback=row_callback,
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """Load a saved prior. Called on :class:`AutoregressivePrior` itself, the class is read from the config."""
        if cls is AutoregressivePrior:
            config = cls.load_config(pretrained_model_name_or_path, **_config_kwargs(kwargs))
            from .registry import prior_class

            return prior_class(config.get("_class_name")).from_pretrained(pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


def _checkpoint(block: Callable[..., Any], *args: Any) -> Any:
    return checkpoint(block, *args, use_reentrant=False)


def _checkpoint_block(block: nn.Module, checkpointing: Callable[..., Any]) -> None:
    """Make ``block``'s forward run under ``checkpointing(forward, *args)`` while gradients are recorded (an instance
    attribute over the class's forward; keyword arguments are bound first: diffusers' functions take positional
    ones)."""
    forward = type(block).forward.__get__(block)

    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return checkpointing(functools.partial(forward, **kwargs), *args)
        return forward(*args, **kwargs)

    block.forward = checkpointed
    block.gradient_checkpointing = True  # what diffusers' is_gradient_checkpointing reads


def _repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The outermost modules inside every ``nn.ModuleList`` of ``model`` (lists of lists included)."""
    blocks = []

    def visit(module: nn.Module, in_list: bool) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                visit(child, in_list=True)
            elif in_list:
                blocks.append(child)
            else:
                visit(child, in_list=False)

    visit(model, in_list=False)
    return blocks


def _value_range(t: torch.Tensor) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer tensor, read back in one device-to-host copy (one sync on a GPU)."""
    lo, hi = torch.aminmax(t)
    return tuple(torch.stack([lo, hi]).tolist())


def _config_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("subfolder", "cache_dir", "local_files_only", "revision", "token")
    return {k: kwargs[k] for k in keys if k in kwargs}
