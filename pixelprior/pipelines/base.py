"""What both pipelines share: their loading and Hub mixins, output types, and the call into the prior's sampler.

:meth:`PriorPipeline.sample_grid` is the one place a pipeline calls ``prior.sample``. It adds what diffusers users
expect of a pipeline call on top of the sampler:

* **class labels drawn for them**: a class-conditional prior called without ``class_labels`` gets labels drawn
  uniformly from ``[0, num_classes)`` with the call's ``generator`` (one per image when it is a list), before any
  pixel is drawn; equal seeds give equal labels and images;
* **``callback_on_step_end(pipe, step, timestep, callback_kwargs)``**, diffusers' signature, called once per
  completed row: ``step`` and ``timestep`` are the index of the row just completed (autoregressive sampling has
  no noise schedule), ``callback_kwargs["latents"]`` a copy of the ``(B, C, H, W)`` long grid drawn so far (rows
  after ``step`` hold zeros, or the kept values when inpainting). The callback may read it, not change it: every
  later position is conditioned on what was drawn, so a changed grid is a ``ValueError``.
  ``callback_on_step_end_tensor_inputs`` chooses the entries of ``callback_kwargs`` (``["latents"]``, the
  only one), and diffusers' ``PipelineCallback`` / ``MultiPipelineCallbacks`` objects bring their own;
* ``compile=True`` (or ``"reduce-overhead"``: the compiled step replayed as CUDA graphs on a GPU), forwarded to
  ``prior.sample`` (DESIGN.md section 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ..distributions.base import Generator, uniform
from .hub import HubPipelineMixin
from .loading import PipelineLoadingMixin

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
StepEndCallback = Callable[[DiffusionPipeline, int, int, dict[str, Any]], dict[str, Any] | None]


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"Expected output_type to be one of {list(OUTPUT_TYPES)}, got {output_type!r}.")


def check_component(name: str, value: Any, base: type) -> None:
    """Raise a ``ValueError`` unless the pipeline component ``name`` is an instance of ``base``."""
    if not isinstance(value, base):
        raise ValueError(f"Expected the component {name!r} to be a {base.__name__}, got {type(value).__name__}.")


def _check_generator(generator: Generator) -> None:
    generators = generator if isinstance(generator, (list, tuple)) else [generator]
    if generator is not None and not all(isinstance(g, torch.Generator) for g in generators):
        raise ValueError(f"Expected generator to be a torch.Generator or a list of them, got {generator!r}.")


class PriorPipeline(PipelineLoadingMixin, HubPipelineMixin, DiffusionPipeline):
    """The base of :class:`~pixelprior.PixelPriorPipeline` and :class:`~pixelprior.VQPriorPipeline`."""

    _callback_tensor_inputs = ["latents"]

    @property
    def num_timesteps(self) -> int:
        """Callback steps of the last call: the rows of the grid (as diffusers pipelines count denoising steps)."""
        return self._num_timesteps

    def show_progress(self, progress: bool) -> bool:
        """Whether the sampler shows its bar: ``progress``, unless ``set_progress_bar_config(disable=True)``."""
        return progress and not getattr(self, "_progress_bar_config", {}).get("disable", False)

    def class_labels_for(self, batch_size: Any, class_labels: Any, generator: Generator) -> Any:
        """``class_labels`` as the prior takes them; drawn uniformly with ``generator`` when ``None`` and needed.

        Shapes:
            -> ``(B,)`` long, an int, or ``None``
        """
        _check_generator(generator)
        if isinstance(class_labels, (list, tuple)):
            try:
                class_labels = torch.as_tensor(class_labels)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"Expected integer class_labels, got {class_labels!r}.") from None
        num_classes = self.prior.num_classes
        valid_batch = isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0
        if class_labels is not None or num_classes is None or not valid_batch:
            return class_labels  # the sampler checks them (and batch_size) against the prior
        # floor(u * K) of a float64 uniform: each class with probability 1/K up to float64 rounding
        u = uniform((batch_size,), generator, self.prior.device, torch.float64)
        return (u * num_classes).long().clamp_(max=num_classes - 1)

    def row_callback_for(
        self,
        callback: StepEndCallback | PipelineCallback | MultiPipelineCallbacks | None,
        tensor_inputs: Sequence[str],
    ) -> Callable[[int, torch.Tensor], None] | None:
        """The sampler's ``row_callback(i, x)`` calling diffusers' ``callback_on_step_end`` (see the module)."""
        if callback is None:
            return None
        if isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
            tensor_inputs = callback.tensor_inputs
        if not callable(callback):
            raise ValueError(f"Expected callback_on_step_end to be callable, got {type(callback).__name__}.")
        if isinstance(tensor_inputs, str) or not all(k in self._callback_tensor_inputs for k in tensor_inputs):
            raise ValueError(
                f"Expected callback_on_step_end_tensor_inputs among {self._callback_tensor_inputs}, got "
                f"{tensor_inputs!r}."
            )

        def row_callback(i: int, x: torch.Tensor) -> None:
            latents = x.clone()  # (B, C, H, W) long: the callback's copy
            outputs = callback(self, i, i, {"latents": latents} if "latents" in tensor_inputs else {})
            returned = outputs.get("latents", x) if isinstance(outputs, dict) else x  # diffusers' way to replace them
            same = isinstance(returned, torch.Tensor) and returned.shape == x.shape and torch.equal(returned, x)
            if not (same and torch.equal(latents, x)):
                raise ValueError(
                    f"Expected callback_on_step_end to leave the latents unchanged (row {i}): later positions are "
                    "conditioned on the values drawn, so they cannot be edited during sampling."
                )

        return row_callback

    def sample_grid(
        self,
        batch_size: int,
        *,
        class_labels: Any,
        generator: Generator,
        temperature: float,
        known: torch.Tensor | None,
        known_mask: torch.Tensor | None,
        use_cache: bool,
        progress: bool,
        compile: bool | str,
        callback_on_step_end: StepEndCallback | PipelineCallback | MultiPipelineCallbacks | None,
        callback_on_step_end_tensor_inputs: Sequence[str],
    ) -> torch.Tensor:
        """Draw the prior's grid with the call's arguments (see the module).

        Shapes:
            -> ``(B, C, H, W)`` long
        """
        if not (isinstance(compile, bool) or compile == "reduce-overhead"):
            raise ValueError(f"Expected compile to be a bool or 'reduce-overhead' (CUDA graphs), got {compile!r}.")
        options = {"compile": compile} if compile is not False else {}
        class_labels = self.class_labels_for(batch_size, class_labels, generator)
        row_callback = self.row_callback_for(callback_on_step_end, callback_on_step_end_tensor_inputs)
        self._num_timesteps = self.prior.grid_size[0]
        return self.prior.sample(
            batch_size,
            class_labels=class_labels,
            known=known,
            known_mask=known_mask,
            generator=generator,
            temperature=temperature,
            use_cache=use_cache,
            progress=self.show_progress(progress),
            row_callback=row_callback,
            **options,
        )
