"""The integer codes of a VQ-VAE as a dataset: encode an image dataset once, train a prior on the code grids.

A diffusers :class:`~diffusers.VQModel` maps an image ``(C, H, W)`` in ``[-1, 1]`` to a grid ``(h, w)`` of codebook
indices in ``[0, K)`` (``K = num_vq_embeddings``). :func:`encode_dataset` does it batch by batch;
:func:`encode_to_file` encodes every split of a named dataset and :func:`save_codes` writes one safetensors file:

* tensors ``{split}_codes``: ``(N, 1, h, w)`` int64 codes, and ``{split}_labels``: ``(N,)`` int64 when the image
  dataset has labels;
* string metadata (safetensors keeps ``str -> str``; structured values are JSON): ``vqvae_path`` (the absolute
  folder, or the Hub id, of the VQModel), ``vqvae_config`` (its configuration as JSON) and ``vqvae_config_sha256``
  (the VQModel's identity), ``num_values`` (= K), ``latent_size`` (``[h, w]``), ``dataset``, ``splits``,
  ``num_classes``.

:func:`load_codes` reads one split back as a :class:`~pixelprior.data.GridDataset` (``in_channels = 1``,
``num_values = K``): ``load_dataset("codes:FILE", split)`` and ``pixelprior train --dataset codes:FILE`` use it, and
:func:`codes_metadata` tells a trainer which VQModel to ship with the prior (a ``VQPriorPipeline``). Nothing is
pickled.

Example:
    >>> from pixelprior.data.codes import encode_to_file, load_codes, codes_metadata
    >>> encode_to_file("runs/vqvae", "mnist5k", "runs/codes.safetensors")  # doctest: +SKIP
    >>> train = load_codes("runs/codes.safetensors", "train")  # doctest: +SKIP
    >>> codes_metadata("runs/codes.safetensors")["latent_size"]  # doctest: +SKIP
    [7, 7]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..distributions import bins_to_input
from ..progress import progress_bar
from .datasets import SPLITS, GridDataset

if TYPE_CHECKING:
    from diffusers import VQModel

FORMAT = "pixelprior.codes"
# metadata keys whose values are JSON (the rest are plain strings)
_JSON_KEYS = ("num_values", "latent_size", "vqvae_config", "splits", "num_classes")


def vqvae_identity(vqvae_config: Mapping[str, Any]) -> tuple[str, str]:
    """The public configuration of a VQModel as canonical JSON, and its SHA-256 (private ``_`` keys, such as the
    diffusers version, are left out so that the same model saved by another version keeps its identity)."""
    public = {key: value for key, value in dict(vqvae_config).items() if not key.startswith("_")}
    text = json.dumps(public, sort_keys=True, default=list)
    return text, hashlib.sha256(text.encode()).hexdigest()


def vqvae_image_size(vqvae_config: Mapping[str, Any]) -> tuple[int, int]:
    """``(H, W)`` of the images a VQModel is configured for (its ``sample_size``, an int or a pair)."""
    size = vqvae_config["sample_size"]
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))


def vqvae_latent_size(vqvae_config: Mapping[str, Any]) -> tuple[int, int]:
    """``(h, w)`` of a VQModel's code grid, from its config.

    Each encoder block but the last halves the grid with a stride-2 3x3 convolution after padding one row and one
    column, so a side ``n`` becomes ``floor(n / 2)``: ``sample_size / 2 ** (len(block_out_channels) - 1)`` when that
    divides (otherwise the decoder does not give back ``sample_size``).
    """
    height, width = vqvae_image_size(vqvae_config)
    for _ in range(len(vqvae_config["block_out_channels"]) - 1):
        height, width = height // 2, width // 2
    return height, width


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run ``module`` in eval mode inside the block and restore its previous mode afterwards.

    A VQModel's outputs differ slightly between train and eval mode (attention kernels), so encoding and decoding
    always use eval mode, whatever mode the caller left the model in.
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def encode_images(vqvae: VQModel, images: torch.Tensor) -> torch.Tensor:
    """The code grid the VQModel's own quantizer picks for float images in ``[-1, 1]`` (in eval mode).

    Shapes:
        images: ``(B, C, H, W)`` float -> ``(B, h, w)`` long in ``[0, num_vq_embeddings)``
    """
    with eval_mode(vqvae):
        latents = vqvae.encode(images).latents  # (B, D, h, w)
        _, _, (_, _, indices) = vqvae.quantize(latents)  # indices: (B * h * w,) in raster order
    return rearrange(indices, "(b h w) -> b h w", b=latents.shape[0], h=latents.shape[2], w=latents.shape[3])


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


def save_codes(
    path: str,
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    *,
    vqvae_path: str,
    vqvae_config: Mapping[str, Any],
    dataset: str,
    num_classes: int | None = None,
) -> None:
    """Write code grids and their provenance to one safetensors file.

    Args:
        path: the ``.safetensors`` file to write.
        splits: split name -> ``(codes (N, 1, h, w) integer, labels (N,) or None)``; every split has one grid size.
        vqvae_path: the VQModel's folder (stored absolute) or Hub id.
        vqvae_config: the VQModel's ``config``; gives ``num_values`` and the identity hash.
        dataset: the name of the image dataset the codes come from.
        num_classes: the number of label classes, when there are labels.
    """
    if not splits:
        raise ValueError("Expected at least one split, got none.")
    num_values = int(vqvae_config["num_vq_embeddings"])
    tensors, latent_size = {}, None
    for split, (codes, labels) in splits.items():
        if not isinstance(codes, torch.Tensor) or codes.ndim != 4 or codes.shape[1] != 1 or codes.is_floating_point():
            got = f"{codes.dtype} of shape {tuple(codes.shape)}" if isinstance(codes, torch.Tensor) else type(codes)
            raise ValueError(f"Expected {split} codes to be an integer tensor of shape (N, 1, h, w), got {got}.")
        if codes.numel() and (codes.min() < 0 or codes.max() >= num_values):
            raise ValueError(
                f"Expected {split} codes in [0, {num_values}), got [{int(codes.min())}, {int(codes.max())}]."
            )
        if latent_size not in (None, list(codes.shape[2:])):
            raise ValueError(
                f"Expected every split on one grid {latent_size}, got {list(codes.shape[2:])} for {split}."
            )
        latent_size = list(codes.shape[2:])
        tensors[f"{split}_codes"] = codes.long().contiguous()
        if labels is not None:
            tensors[f"{split}_labels"] = labels.long().contiguous()
    config_json, config_hash = vqvae_identity(vqvae_config)
    metadata = {
        "format": FORMAT,
        "vqvae_path": os.path.abspath(vqvae_path) if os.path.isdir(vqvae_path) else vqvae_path,
        "vqvae_config": config_json,
        "vqvae_config_sha256": config_hash,
        "num_values": json.dumps(num_values),
        "latent_size": json.dumps(latent_size),
        "dataset": dataset,
        "splits": json.dumps(list(splits)),
        "num_classes": json.dumps(num_classes),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata=metadata)


def vqvae_folder(vqvae_path: str) -> str:
    """Where to load a VQModel from: a VQModel folder or Hub id as given, the ``vqvae/`` of a pipeline folder."""
    if os.path.isfile(os.path.join(vqvae_path, "vqvae", "config.json")):
        return os.path.join(vqvae_path, "vqvae")
    return vqvae_path


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
        The written file's metadata (:func:`codes_metadata`).
    """
    from diffusers import VQModel

    from .datasets import load_dataset

    if not output.endswith(".safetensors"):
        raise ValueError(f"Expected an output file name ending in .safetensors, got {output!r}.")
    folder = vqvae_folder(vqvae_path)
    vqvae = VQModel.from_pretrained(folder)
    encoded, num_classes = {}, None
    for split in splits:
        images = load_dataset(dataset_name, split)
        encoded[split] = encode_dataset(vqvae, images, batch_size=batch_size, device=device, progress=progress)
        num_classes = images.num_classes
    save_codes(
        output, encoded, vqvae_path=folder, vqvae_config=vqvae.config, dataset=dataset_name, num_classes=num_classes
    )
    return codes_metadata(output)


def codes_metadata(path: str) -> dict[str, Any]:
    """The provenance stored with a codes file.

    Returns:
        ``{"format", "vqvae_path", "vqvae_config" (dict), "vqvae_config_sha256", "num_values" (int),
        "latent_size" ([h, w]), "dataset", "splits" (list), "num_classes" (int or None)}``.
    """
    if not os.path.isfile(path):
        raise ValueError(f"Expected a codes file written by `pixelprior encode`, got {path!r} (no such file).")
    with safe_open(path, framework="pt") as f:
        metadata = dict(f.metadata() or {})
    if metadata.get("format") != FORMAT:
        raise ValueError(f"Expected a codes file written by `pixelprior encode` ({FORMAT}), got {path!r}.")
    for key in _JSON_KEYS:
        metadata[key] = json.loads(metadata[key])
    return metadata


def load_codes(path: str, split: str) -> GridDataset:
    """One split of a codes file as a dataset of ``(1, h, w)`` grids with ``num_values`` = the codebook size.

    Example:
        >>> from pixelprior.data.codes import load_codes
        >>> train = load_codes("runs/codes.safetensors", "train")  # doctest: +SKIP
        >>> train.in_channels, train.num_values, train.sample_size  # doctest: +SKIP
        (1, 16, (7, 7))
    """
    metadata = codes_metadata(path)
    if split not in metadata["splits"]:
        raise ValueError(f"Expected split to be one of {metadata['splits']} in {path!r}, got {split!r}.")
    tensors = load_file(path)
    return GridDataset(
        tensors[f"{split}_codes"],
        num_values=metadata["num_values"],
        labels=tensors.get(f"{split}_labels"),
        num_classes=metadata["num_classes"] if f"{split}_labels" in tensors else None,
    )
