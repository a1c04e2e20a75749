"""``PixelPriorPipeline``: pixel-space synthesis with an autoregressive prior, diffusers style.

The pipeline only samples: it calls ``prior.sample`` (the one sampling loop, :mod:`pixelprior.sampling`) and turns
the integer grid into images with :func:`pixelprior.distributions.bins_to_images`, the one bins -> float
conversion. Saved with ``save_pretrained`` it is a folder of ``model_index.json`` and ``prior/`` (``config.json``
+ ``*.safetensors``) that ``PixelPriorPipeline.from_pretrained`` loads back, from a folder or a Hub repository
(:mod:`pixelprior.pipelines.hub`).

Inpainting: ``image`` + ``mask_image`` (white = regenerate, black = keep). The image is quantized to the prior's bins
with :func:`pixelprior.distributions.images_to_bins` (the one float -> bins conversion, rounding) and the black pixels
are passed to the sampler as ``known``: they come back unchanged and every regenerated pixel is conditioned on
all kept pixels before it in raster order.

Palette (optional component ``palette``, a :class:`~pixelprior.data.ColorPalette`): the prior models one colour id per
pixel (``in_channels=1``, ``num_values`` = the palette's colours, as Image GPT [1]); the pipeline decodes sampled ids
to RGB images, and encodes an inpainting ``image`` (RGB) to the ids of its nearest colours, so kept pixels come back
as their palette colours. Saved as ``palette/palette.safetensors``.

[1] M. Chen et al. Generative Pretraining from Pixels. ICML 2020.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import ImagePipelineOutput
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor

from ..data.palette import ColorPalette
from ..distributions import bins_to_images, images_to_bins
from ..distributions.base import Generator
from ..models import AutoregressivePrior
from .base import PriorPipeline, StepEndCallback, check_component, check_output_type
from .folder import Component
from .inpainting import prepare_inpainting_inputs
from .library import LIBRARY, register_pipeline


class PixelPriorPipeline(PriorPipeline):
    """Sample images from an autoregressive prior over pixels.

    Args:
        prior: an :class:`~pixelprior.AutoregressivePrior` over pixel bins (``in_channels`` 1 or 3), or over the colour
            ids of ``palette``.
        palette: optional; a :class:`~pixelprior.data.ColorPalette` whose ids the prior models (``in_channels=1``,
            ``num_values == palette.num_colors``): outputs are decoded to RGB through it.

    Example:
        >>> import torch
        >>> from pixelprior import create_prior
        >>> from pixelprior.pipelines import PixelPriorPipeline
        >>> pipe = PixelPriorPipeline(create_prior("pixelcnn_mnist", hidden_channels=16, num_layers=1))
        >>> images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0), progress=False).images
        >>> # inpainting: keep the top half of the first image, regenerate the bottom half (white)
        >>> mask = torch.zeros(1, 28, 28)
        >>> mask[:, 14:] = 1.0
        >>> completed = pipe(image=images[0], mask_image=mask, progress=False).images[0]
    """

    model_cpu_offload_seq = "prior"
    _optional_components = ["palette"]
    components = {
        "prior": Component(LIBRARY, AutoregressivePrior),
        "palette": Component(LIBRARY, ColorPalette, optional=True),
    }

    def __init__(self, prior: AutoregressivePrior, palette: ColorPalette | None = None) -> None:
        super().__init__()
        check_component("prior", prior, AutoregressivePrior)
        if palette is not None:
            check_component("palette", palette, ColorPalette)
        if palette is not None and (prior.in_channels != 1 or prior.num_values != palette.num_colors):
            raise ValueError(
                f"Expected a prior over the palette's ids (in_channels=1, num_values={palette.num_colors}), got "
                f"in_channels={prior.in_channels}, num_values={prior.num_values}."
            )
        self.register_modules(prior=prior, palette=palette)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=False)  # [0, 1] floats -> outputs

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
        image: PipelineImageInput | None = None,
        mask_image: PipelineImageInput | None = None,
        compile: bool | str = False,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        """Draw ``batch_size`` images.

        Args:
            batch_size: number of images.
            class_labels: ``(B,)`` labels, or one int for every image, for class-conditional priors; drawn
                uniformly with ``generator`` when not given (see :mod:`pixelprior.pipelines.base`).
            generator: a ``torch.Generator`` or a list of one per image; equal seeds give equal images.
            temperature: > 0, divides the logits.
            output_type: ``"pil"`` (list of PIL images), ``"np"`` (``(B, H, W, C)`` floats in ``[0, 1]``), ``"pt"``
                (``(B, C, H, W)`` floats in ``[0, 1]``) or ``"latent"`` (the ``(B, C, H, W)`` long grid of bins; with
                a palette, the ``(B, 1, H, W)`` colour ids).
            return_dict: return an :class:`~diffusers.ImagePipelineOutput` rather than a tuple.
            use_cache: the fast incremental sampler (default) or the plain reference loop.
            progress: show the sampler's progress bar (also off after ``set_progress_bar_config(disable=True)``).
            image: inpainting: the image(s) to complete, values in ``[0, 1]`` (PIL, NumPy or torch, see
                :mod:`pixelprior.pipelines.inpainting`) of the prior's size; quantized to its bins by rounding.
            mask_image: inpainting: white (>= 0.5) = regenerate, black = keep; the kept pixels come back unchanged.
            compile: the prior's compiled sampling step (``prior.sample(compile=True)``); ``"reduce-overhead"``
                replays it as CUDA graphs (a model on a GPU).
            callback_on_step_end: ``callback(pipe, step, timestep, callback_kwargs)``, diffusers' signature, called
                once per completed row (``step`` = ``timestep`` = the row) with a copy of the grid drawn so far as
                ``callback_kwargs["latents"]`` (see :mod:`pixelprior.pipelines.base`).
            callback_on_step_end_tensor_inputs: the entries of ``callback_kwargs``: ``["latents"]``.

        Returns:
            :class:`~diffusers.ImagePipelineOutput` with ``images``, or the tuple ``(images,)``.
        """
        check_output_type(output_type)
        palette = self.palette
        channels = 3 if palette is not None else self.prior.in_channels  # of the images in and out
        if output_type == "pil" and channels not in (1, 3):
            raise ValueError(f"Expected a prior with 1 or 3 channels for output_type='pil', got {channels} channels.")
        known = known_mask = None
        if image is not None or mask_image is not None:
            known, known_mask = self._known_grid(image, mask_image, channels, batch_size)
            batch_size = len(known)

        x = self.sample_grid(
            batch_size,
            class_labels=class_labels,
            generator=generator,
            temperature=temperature,
            known=known,
            known_mask=known_mask,
            use_cache=use_cache,
            progress=progress,
            compile=compile,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # (B, C, H, W) long
        if output_type == "latent":
            images = x
        else:
            # palette ids -> (B, 3, H, W) RGB bins; then bins -> (B, C, H, W) floats in [0, 1]
            bins, levels = (x, self.prior.num_values) if palette is None else (palette.decode(x), palette.num_values)
            images = self.image_processor.postprocess(bins_to_images(bins, levels), output_type=output_type)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def _known_grid(
        self, image: PipelineImageInput, mask_image: PipelineImageInput, channels: int, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inpainting's kept values and where they are: the image quantized to the prior's bins (or, with a palette,
        to the ids of its nearest colours) and the black pixels of the mask.

        Shapes:
            -> known ``(B, C, H, W)`` long (``(B, 1, H, W)`` ids with a palette), known_mask ``(B, 1, H, W)`` bool
        """
        images, regenerate = prepare_inpainting_inputs(image, mask_image, channels, self.prior.grid_size, batch_size)
        palette = self.palette
        if palette is not None:  # RGB bins -> (B, 1, H, W) ids of the nearest colours
            known = palette.encode(images_to_bins(images, palette.num_values))
        else:
            known = images_to_bins(images, self.prior.num_values)  # (B, C, H, W) long
        return known.to(self.device), ~regenerate.to(self.device)  # True = keep


register_pipeline(PixelPriorPipeline)
