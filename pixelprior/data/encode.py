"""Encode an image dataset once with a VQ-VAE, into a codes file that priors train on (``pixelprior encode``).

:func:`encode_dataset` maps every image of a :class:`~pixelprior.data.GridDataset` to the code grid of a diffusers
``VQModel`` (:func:`pixelprior.vqmodel.encode_images`), batch by batch; :func:`encode_to_file` does it for every split
of a named dataset and writes one file with :func:`pixelprior.data.codes.save_codes`. Its own module, above both
:mod:`.datasets` (which reads codes files) and :mod:`.codes` (the format), so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange

from ..distributions import bins_to_input
from ..paths import check_writable_file
from ..progress import progress_bar
from ..vqmodel import encode_images, load_vqmodel, vqvae_folder, vqvae_image_size
from .codes import codes_metadata, save_codes
from .datasets import load_dataset
from .grid import SPLITS, GridDataset

if TYPE_CHECKING:
    from diffusers import VQModel


def encode_dataset(
    vqvae: VQModel,
    dataset: GridDataset,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode every image of ``dataset`` into its code grid, in batches.

    The integer bins are mapped to ``[-1, 1]`` (the diffusers VQModel convention) by the one bins -> float
    conversion, :func:`pixelprior.distributions.bins_to_input`.

    Args:
        vqvae: a diffusers ``VQModel`` whose ``in_channels`` and ``sample_size`` match the images.
        dataset: integer images ``(N, C, H, W)``.
        batch_size: images per forward pass.
        device: where to encode; CUDA when available by default. The VQModel is moved there.
        progress: show a progress bar.

    Returns:
        ``codes`` ``(N, 1, h, w)`` long in ``[0, num_vq_embeddings)`` (on the CPU) and the dataset's ``(N,)`` labels
        or ``None``.

    Shapes:
        dataset.x: ``(N, C, H, W)`` -> codes ``(N, 1, h, w)`` long
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected batch_size to be a positive int, got {batch_size!r}.")
    config = vqvae.config
    if dataset.in_channels != config.in_channels:
        raise ValueError(
            f"Expected images with the VQModel's in_channels={config.in_channels}, got {dataset.in_channels} channels."
        )
    if tuple(dataset.sample_size) != vqvae_image_size(config):
        got = tuple(dataset.sample_size)
        raise ValueError(f"Expected images of the VQModel's sample_size {vqvae_image_size(config)}, got {got}.")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    vqvae = vqvae.to(device)
    dtype = next(vqvae.parameters()).dtype
    chunks = []
    for start in progress_bar(range(0, len(dataset), batch_size), desc="encode", disable=not progress):
        x = dataset.x[start : start + batch_size].to(device)  # (b, C, H, W) long
        images = bins_to_input(x, dataset.num_values, dtype=dtype)  # (b, C, H, W) in [-1, 1]
        chunks.append(encode_images(vqvae, images).cpu())  # (b, h, w)
    codes = rearrange(torch.cat(chunks), "n h w -> n 1 h w")
    return codes, dataset.labels


def _check_output(output: str) -> None:
    """Before any work: a ``.safetensors`` name that can be written (:func:`pixelprior.paths.check_writable_file`)."""
    if not isinstance(output, str) or not output.endswith(".safetensors"):
        raise ValueError(f"Expected an output file name ending in .safetensors, got {output!r}.")
    check_writable_file(output, "the output file")


def encode_to_file(
    vqvae_path: str,
    dataset_name: str,
    output: str,
    splits: Sequence[str] = SPLITS,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode the ``splits`` of the named image dataset with the VQModel at ``vqvae_path`` into ``output``.

    Every input is checked before any image is encoded: the output path, the VQModel (:func:`pixelprior.vqmodel.
    load_vqmodel`) and the dataset of each split.

    Args:
        vqvae_path: a folder written by ``VQModel.save_pretrained`` (or a pipeline folder holding ``vqvae/``), or a
            Hub id.
        dataset_name: a name :func:`pixelprior.data.load_dataset` knows, e.g. ``"mnist5k"``.
        output: the ``.safetensors`` file to write.
        splits: which splits to encode.
        batch_size: images per forward pass.
        device: where to encode; CUDA when available by default.
        progress: show progress bars.

    Returns:
        The written file's metadata (:func:`pixelprior.data.codes.codes_metadata`).
    """
    _check_output(output)
    folder = vqvae_folder(vqvae_path)
    vqvae = load_vqmodel(folder)
    images = {split: load_dataset(dataset_name, split) for split in splits}
    encoded = {
        split: encode_dataset(vqvae, data, batch_size=batch_size, device=device, progress=progress)
        for split, data in images.items()
    }
    num_classes = next(iter(images.values())).num_classes if images else None
    save_codes(
        output, encoded, vqvae_path=folder, vqvae_config=vqvae.config, dataset=dataset_name, num_classes=num_classes
    )
    return codes_metadata(output)
