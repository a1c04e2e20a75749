"""The glue between pixelprior and a diffusers :class:`~diffusers.VQModel`: its grids, its identity, encoding, loading.

A VQ-VAE maps an image ``(C, H, W)`` in ``[-1, 1]`` to a grid ``(h, w)`` of codebook indices in ``[0, K)``
(``K = num_vq_embeddings``); a prior over those grids (``in_channels = 1``, ``num_values = K``) is trained on codes
files (:mod:`pixelprior.data.codes`) and sampled through ``VQPriorPipeline``. The three of them — the data, the
pipelines and the trainer — need the same few facts about a VQModel, so they live here, in a module that imports
neither of them (it depends on torch, einops and diffusers only):

* its grids: :func:`vqvae_image_size`, :func:`vqvae_latent_size` (from its config, without loading weights);
* its identity: :func:`vqvae_identity` (canonical JSON of its public config and its SHA-256), which a codes file
  records so that a prior is never shipped with another VQModel than the one its codes came from;
* encoding: :func:`encode_images` (the code grid its own quantizer picks, always in eval mode: :func:`eval_mode`);
* loading: :func:`vqvae_folder` (a VQModel folder or a pipeline folder's ``vqvae/``), :func:`load_vqmodel_config`
  and :func:`load_vqmodel`, which say in one ``ValueError`` what is wrong with a path — missing, not a VQModel,
  weights that do not fit — instead of diffusers' ``OSError`` or, for a folder of another model class, a VQModel
  silently initialized at random.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange

if TYPE_CHECKING:
    from diffusers import VQModel

VQMODEL_CLASS = "VQModel"
_LOCAL_PREFIXES = ("/", ".", "~")  # what a path has and a Hub id ("user/name") never starts with


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


def vqvae_folder(vqvae_path: str | os.PathLike) -> str:
    """Where to load a VQModel from: a VQModel folder or Hub id as given, the ``vqvae/`` of a pipeline folder."""
    vqvae_path = os.fspath(vqvae_path)
    if os.path.isfile(os.path.join(vqvae_path, "vqvae", "config.json")):
        return os.path.join(vqvae_path, "vqvae")
    return vqvae_path


def _check_local(path: str) -> None:
    """A path that cannot be a Hub id (``user/name``) must be a folder holding a ``config.json``.

    ``runs/vqvae`` when ``runs/`` is a local folder counts as a path: asking the Hub for it would take half a minute
    of retries offline before saying what a missing folder says at once.
    """
    expanded = os.path.expanduser(path)
    parent = os.path.dirname(expanded)
    looks_local = (
        path.startswith(_LOCAL_PREFIXES)
        or os.path.exists(expanded)
        or path.count("/") > 1
        or (bool(parent) and os.path.isdir(parent))
    )
    if not looks_local:
        return
    if not os.path.exists(expanded):
        raise ValueError(f"Expected a VQModel folder (VQModel.save_pretrained), got {path!r}: no such folder.")
    if not os.path.isdir(expanded):
        raise ValueError(f"Expected a VQModel folder (VQModel.save_pretrained), got {path!r}, which is a file.")
    if not os.path.isfile(os.path.join(expanded, "config.json")):
        raise ValueError(f"Expected a VQModel folder with a config.json, got {path!r}, which has none.")


def load_vqmodel_config(vqvae_path: str | os.PathLike) -> dict[str, Any]:
    """The config of the VQModel at ``vqvae_path`` (a VQModel folder, a pipeline folder or a Hub id), checked to be
    a VQModel's, without loading its weights.

    Raises:
        ValueError: the path does not exist (naming it), cannot be reached (a Hub id offline), holds no readable
            ``config.json``, or holds another model class.
    """
    from diffusers import VQModel

    folder = vqvae_folder(vqvae_path)
    _check_local(folder)
    try:
        config = VQModel.load_config(os.path.expanduser(folder))
    except (OSError, ValueError) as error:  # OSError: diffusers' "couldn't find"; ValueError: malformed JSON / id
        where = "" if os.path.exists(os.path.expanduser(folder)) else " (no such local folder either)"
        raise ValueError(f"Expected a VQModel folder or Hub id, got {folder!r}{where}: {error}") from None
    if config.get("_class_name") != VQMODEL_CLASS:
        raise ValueError(
            f"Expected the config of a diffusers {VQMODEL_CLASS} in {folder!r}, got _class_name="
            f"{config.get('_class_name')!r}."
        )
    return dict(config)


def load_vqmodel(vqvae_path: str | os.PathLike) -> VQModel:
    """The VQModel at ``vqvae_path`` (a VQModel folder, a pipeline folder holding ``vqvae/``, or a Hub id), in eval
    mode, with every weight loaded from the folder (none left at its random initialization).

    Raises:
        ValueError: as :func:`load_vqmodel_config`, and for weights that are missing, unreadable or do not fit the
            config (diffusers would only warn and keep random values).
    """
    from diffusers import VQModel

    load_vqmodel_config(vqvae_path)
    folder = os.path.expanduser(vqvae_folder(vqvae_path))
    try:
        # low_cpu_mem_usage=False: the only way diffusers reports missing keys instead of filling them at random.
        vqvae, info = VQModel.from_pretrained(folder, output_loading_info=True, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as error:  # unreadable or mis-shaped weights; safetensors errors
        raise ValueError(f"Expected a VQModel's weights in {folder!r} that fit its config, got: {error}") from None
    wrong = {key: info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(key)}
    if wrong:
        found = "; ".join(f"{key.replace('_', ' ')}: {sorted(map(str, keys))[:5]}" for key, keys in wrong.items())
        raise ValueError(f"Expected the weights in {folder!r} to fit its VQModel config, got {found}.")
    return vqvae.eval()
