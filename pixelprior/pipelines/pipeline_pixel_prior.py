"""``PixelPriorPipeline``: pixel-space synthesis with an autoregressive prior, diffusers style.

The pipeline only samples: it calls ``prior.sample`` (the one sampling loop, :mod:`pixelprior.sampling`) and turns
the integer grid into images with :func:`pixelprior.distributions.bins_to_images`, the one bins -> float
conversion. Saved with ``save_pretrained`` it is a folder of ``model_index.json`` and ``prior/`` (``config.json``
+ ``*.safetensors``) that ``PixelPriorPipeline.from_pretrained`` loads back.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput

from ..distributions import bins_to_images
from ..distributions.base import Generator
from ..models import AutoregressivePrior
from .library import register_with_diffusers

register_with_diffusers()

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class PixelPriorPipeline(DiffusionPipeline):
    """Sample images from an autoregressive prior over pixels.

    Args:
        prior: an :class:`~pixelprior.AutoregressivePrior` over pixel bins (``in_channels`` 1 or 3).

    Example:
        >>> import torch
        >>> from pixelprior import create_prior
        >>> from pixelprior.pipelines import PixelPriorPipeline
        >>> pipe = PixelPriorPipeline(create_prior("pixelcnn_mnist", hidden_channels=16, num_layers=1))
        >>> images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0), progress=False).images
    """

    model_cpu_offload_seq = "prior"

    def __init__(self, prior: AutoregressivePrior) -> None:
        super().__init__()
        self.register_modules(prior=prior)

    # ----------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        class_labels: torch.Tensor | list[int] | int | None = None,
        generator: Generator = None,
        temperature: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
        use_cache: bool = True,
        progress: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Draw ``batch_size`` images.

        Args:
            batch_size: number of images.
            class_labels: ``(B,)`` labels, or one int for every image, for class-conditional priors.
            generator: a ``torch.Generator`` or a list of one per image; equal seeds give equal images.
            temperature: > 0, divides the logits.
            output_type: ``"pil"`` (list of PIL images), ``"np"`` (``(B, H, W, C)`` floats in ``[0, 1]``), ``"pt"``
                (``(B, C, H, W)`` floats in ``[0, 1]``) or ``"latent"`` (the ``(B, C, H, W)`` long grid of bins).
            return_dict: return an :class:`~diffusers.ImagePipelineOutput` rather than a tuple.
            use_cache: the fast incremental sampler (default) or the plain reference loop.
            progress: show the sampler's progress bar.

        Returns:
            :class:`~diffusers.ImagePipelineOutput` with ``images``, or the tuple ``(images,)``.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"Expected output_type to be one of {list(OUTPUT_TYPES)}, got {output_type!r}.")
        channels = self.prior.in_channels
        if output_type == "pil" and channels not in (1, 3):
            raise ValueError(f"Expected a prior with 1 or 3 channels for output_type='pil', got {channels} channels.")
        if isinstance(class_labels, (list, tuple)):
            class_labels = torch.as_tensor(class_labels)

        x = self.prior.sample(
            batch_size,
            class_labels=class_labels,
            generator=generator,
            temperature=temperature,
            use_cache=use_cache,
            progress=progress,
        )  # (B, C, H, W) long
        if output_type == "latent":
            images = x
        else:
            images = bins_to_images(x, self.prior.num_values)  # (B, C, H, W) in [0, 1]
            if output_type != "pt":
                images = images.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, C)
                if output_type == "pil":
                    images = self.numpy_to_pil(images)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
