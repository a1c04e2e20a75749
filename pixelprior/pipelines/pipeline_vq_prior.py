"""``VQPriorPipeline``: an autoregressive prior over the codes of a VQ-VAE, decoded by the VQ-VAE.

Two-stage generation as in VQ-VAE (van den Oord et al., 2017, https://arxiv.org/abs/1711.00937) and VQ-VAE-2: the
prior samples a grid of codebook indices ``(B, 1, h, w)`` in ``[0, K)`` and a diffusers
:class:`~diffusers.VQModel` turns it into images. Decoding does what the VQModel's own quantizer does after it has
picked the indices: look the codes up in the codebook (``quantize.get_codebook_entry``), then decode with
``force_not_quantize=True`` (the looked-up vectors are already on the codebook; quantizing them again could only
move a vector that has a duplicate). This holds for both kinds of VQModel: ``lookup_from_codebook=True`` (decode
takes the indices) and ``False`` (decode takes the vectors).

Images follow the diffusers VQModel convention: the VQModel reads and writes ``[-1, 1]``; ``"pt"`` / ``"np"`` /
``"pil"`` outputs are in ``[0, 1]`` (:class:`~diffusers.image_processor.VaeImageProcessor`), ``"latent"`` is the
integer code grid.

Inpainting: ``image`` + ``mask_image`` (white = regenerate, black = keep). The image is encoded to codes with the
VQModel; a code is kept when its whole cell of ``(H / h) x (W / w)`` pixels is black (see
:func:`~pixelprior.pipelines.inpainting.keep_mask_on_grid`), the others are sampled by the prior conditioned on the
kept ones. Kept *codes* come back unchanged; the decoded kept pixels are the VQ-VAE's reconstruction of them.
NOTE: the encoder's receptive field is wider than a cell, so a kept code near the mask's edge is the code the
encoder gave with the regenerated pixels in view, as it would for the unmasked image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import ImagePipelineOutput, VQModel
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from einops import rearrange

from ..distributions.base import Generator
from ..models import AutoregressivePrior
from ..vqmodel import encode_images, eval_mode, vqvae_image_size, vqvae_latent_size
from .base import PriorPipeline, StepEndCallback, check_component, check_output_type
from .folder import Component
from .inpainting import keep_mask_on_grid, prepare_inpainting_inputs
from .library import LIBRARY, register_pipeline


def check_prior_matches_vqvae(prior: AutoregressivePrior, vqvae: VQModel) -> None:
    """Raise a ``ValueError`` unless ``prior`` models ``vqvae``'s codes: one channel, K values, its latent grid."""
    num_codes = vqvae.config.num_vq_embeddings
    latent_size = vqvae_latent_size(vqvae.config)
    if prior.in_channels != 1:
        raise ValueError(f"Expected a prior over code grids with in_channels=1, got in_channels={prior.in_channels}.")
    if prior.num_values != num_codes:
        raise ValueError(
            f"Expected a prior with num_values equal to the VQModel's codebook size {num_codes}, "
            f"got num_values={prior.num_values}."
        )
    if tuple(prior.grid_size) != latent_size:
        raise ValueError(
            f"Expected a prior over the VQModel's latent grid {latent_size} (sample_size "
            f"{vqvae.config.sample_size} / 2**{len(vqvae.config.block_out_channels) - 1}), "
            f"got sample_size={tuple(prior.grid_size)}."
        )


class VQPriorPipeline(PriorPipeline):
    """Sample images by sampling VQ-VAE codes with an autoregressive prior and decoding them.

    Args:
        prior: an :class:`~pixelprior.AutoregressivePrior` with ``in_channels=1``, ``num_values`` = the VQModel's
            ``num_vq_embeddings`` and ``sample_size`` = its latent grid.
        vqvae: a diffusers :class:`~diffusers.VQModel`.

    Example:
        >>> import torch
        >>> from diffusers import VQModel
        >>> from pixelprior import VQPriorPipeline, create_prior
        >>> vqvae = VQModel(in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
        ...     down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        ...     latent_channels=4, num_vq_embeddings=8, sample_size=16)
        >>> prior = create_prior("gated_pixelcnn_mnist", sample_size=8, num_values=8, hidden_channels=16, num_layers=2)
        >>> pipe = VQPriorPipeline(prior, vqvae)
        >>> images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0), progress=False).images
        >>> codes = pipe(batch_size=4, output_type="latent", progress=False).images  # (4, 1, 8, 8) long
    """

    model_cpu_offload_seq = "prior->vqvae"
    components = {"prior": Component(LIBRARY, AutoregressivePrior), "vqvae": Component("diffusers", VQModel)}

    def __init__(self, prior: AutoregressivePrior, vqvae: VQModel) -> None:
        super().__init__()
        check_component("prior", prior, AutoregressivePrior)
        check_component("vqvae", vqvae, VQModel)
        check_prior_matches_vqvae(prior, vqvae)
        self.register_modules(prior=prior, vqvae=vqvae)
        # the VQModel reads and writes [-1, 1]; outputs are [0, 1] images
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)

    # ----------------------------------------------------------------------------------- codes <-> images
    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode a code grid exactly as the VQModel decodes the codes its quantizer picked (in eval mode).

        Shapes:
            codes: ``(B, 1, h, w)`` or ``(B, h, w)`` long -> ``(B, out_channels, H, W)`` float in about ``[-1, 1]``
        """
        if codes.ndim == 4 and codes.shape[1] == 1:
            codes = codes[:, 0]
        latent_size = vqvae_latent_size(self.vqvae.config)
        if codes.ndim != 3 or tuple(codes.shape[1:]) != latent_size or torch.is_floating_point(codes):
            raise ValueError(
                f"Expected integer codes of shape (B, 1, {latent_size[0]}, {latent_size[1]}), got "
                f"{codes.dtype} of shape {tuple(codes.shape)}."
            )
        num_codes = self.vqvae.config.num_vq_embeddings
        if codes.numel() and (codes.min() < 0 or codes.max() >= num_codes):
            raise ValueError(f"Expected codes in [0, {num_codes}), got [{int(codes.min())}, {int(codes.max())}].")
        batch, h, w = codes.shape
        shape = (batch, h, w, self.vqvae.quantize.vq_embed_dim)  # get_codebook_entry's (B, h, w, D) layout
        flat = rearrange(codes, "b h w -> (b h w)").to(self.vqvae.device)
        with eval_mode(self.vqvae):
            if self.vqvae.config.lookup_from_codebook:
                # decode does the codebook lookup itself when given indices and force_not_quantize=True
                return self.vqvae.decode(flat, force_not_quantize=True, shape=shape).sample
            vectors = self.vqvae.quantize.get_codebook_entry(flat, shape)  # (B, D, h, w)
            return self.vqvae.decode(vectors, force_not_quantize=True).sample

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """The codes the VQModel's quantizer picks for images in ``[-1, 1]``.

        Shapes:
            images: ``(B, C, H, W)`` float -> ``(B, 1, h, w)`` long
        """
        images = images.to(device=self.vqvae.device, dtype=self.vqvae.dtype)
        return rearrange(encode_images(self.vqvae, images), "b h w -> b 1 h w")

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
        """Draw ``batch_size`` images (or complete ``image`` where ``mask_image`` is white).

        Args:
            batch_size: number of images.
            class_labels: ``(B,)`` labels, or one int for every image, for class-conditional priors; drawn
                uniformly with ``generator`` when not given (see :mod:`pixelprior.pipelines.base`).
            generator: a ``torch.Generator`` or a list of one per image; equal seeds give equal images.
            temperature: > 0, divides the logits.
            output_type: ``"pil"``, ``"np"`` (``(B, H, W, C)`` in ``[0, 1]``), ``"pt"`` (``(B, C, H, W)`` in
                ``[0, 1]``) or ``"latent"`` (the ``(B, 1, h, w)`` long grid of codes).
            return_dict: return an :class:`~diffusers.ImagePipelineOutput` rather than a tuple.
            use_cache: the fast incremental sampler (default) or the plain reference loop.
            progress: show the sampler's progress bar (also off after ``set_progress_bar_config(disable=True)``).
            image: inpainting: image(s) of the VQModel's ``sample_size`` with values in ``[0, 1]``.
            mask_image: inpainting: white = regenerate, black = keep; codes whose whole cell is black are kept.
            compile: the prior's compiled sampling step (``prior.sample(compile=True)``); ``"reduce-overhead"``
                replays it as CUDA graphs (a model on a GPU).
            callback_on_step_end: ``callback(pipe, step, timestep, callback_kwargs)``, diffusers' signature, called
                once per completed row of codes (``step`` = ``timestep`` = the row) with a copy of the code grid
                drawn so far as ``callback_kwargs["latents"]`` (see :mod:`pixelprior.pipelines.base`).
            callback_on_step_end_tensor_inputs: the entries of ``callback_kwargs``: ``["latents"]``.

        Returns:
            :class:`~diffusers.ImagePipelineOutput` with ``images``, or the tuple ``(images,)``.
        """
        check_output_type(output_type)
        known = known_mask = None
        if image is not None or mask_image is not None:
            channels, size = self.vqvae.config.in_channels, vqvae_image_size(self.vqvae.config)
            images, regenerate = prepare_inpainting_inputs(image, mask_image, channels, size, batch_size)
            known = self.encode_images(self.image_processor.normalize(images)).to(self.prior.device)  # (B, 1, h, w)
            known_mask = keep_mask_on_grid(regenerate, self.prior.grid_size).to(self.prior.device)  # True = keep
            batch_size = len(known)

        codes = self.sample_grid(
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
        )  # (B, 1, h, w) long
        if output_type == "latent":
            images = codes
        else:
            decoded = self.decode_codes(codes)  # (B, C, H, W) in about [-1, 1]
            images = self.image_processor.postprocess(decoded.float(), output_type=output_type)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


register_pipeline(VQPriorPipeline)
