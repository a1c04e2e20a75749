"""OpenAI's Image GPT in transformers' format (``ImageGPTForCausalImageModeling``) as a pixelprior pipeline, exactly.

[1] M. Chen et al. Generative Pretraining from Pixels. ICML 2020.
    https://cdn.openai.com/papers/Generative_Pretraining_from_Pixels_V2.pdf

A transformers Image GPT folder (or Hub repository: ``openai/imagegpt-small``, ``-medium``, ``-large``) holds
``config.json``, the weights (``model.safetensors``, or ``pytorch_model.bin``, read with ``weights_only=True``) and
``preprocessor_config.json``, whose ``clusters`` are the 512 RGB colours of [1]'s 9-bit palette on the ``[-1, 1]``
scale. The conversion reads these files directly (transformers itself is not needed) and builds

* an :class:`~pixelprior.ImageGPT` with ``norm_type="rms_norm"`` and ``activation="quick_gelu"`` (or ``"gelu"``, as
  ``activation_function`` says): 1 channel of ``vocab_size - 1`` values (the clusters) on a ``sqrt(n_positions)``
  square grid;
* a :class:`~pixelprior.data.ColorPalette` of the clusters moved to ``[0, 1]`` (``(c + 1) / 2``), so that the
  pipeline decodes sampled ids to RGB images and encodes images for inpainting.

The weights map one to one (``D = n_embd``):

============================================  ====================================================================
transformers                                  pixelprior
============================================  ====================================================================
``transformer.wte.weight`` rows ``0 .. K-1``  ``token_embedding.weight`` (the ``K = vocab_size - 1`` clusters)
``transformer.wte.weight`` row ``K``          ``start_embedding.weight`` (the start-of-sequence token)
``transformer.wpe.weight``                    ``position_embedding.weight`` (the first ``H W`` rows)
``transformer.h.N.ln_1`` / ``ln_2.weight``    ``blocks.N.norm1`` / ``norm2.weight``
``transformer.h.N.attn.c_attn``               ``blocks.N.attn.qkv`` (transposed: ``Conv1D`` stores ``(in, out)``)
``transformer.h.N.attn.c_proj``               ``blocks.N.attn.proj`` (transposed)
``transformer.h.N.mlp.c_fc`` / ``c_proj``     ``blocks.N.mlp.0`` / ``mlp.2`` (transposed)
``transformer.ln_f.weight``                   ``norm.weight``
``lm_head.weight``                            ``head.weight`` (``K`` logits, no bias, not tied)
============================================  ====================================================================

Older transformers versions also saved each layer's causal-mask buffers (``attn.bias``, ``attn.masked_bias``); they
carry no weights and are skipped. Settings pixelprior's network does not have (``scale_attn_by_inverse_layer_idx``,
unscaled attention, another MLP width or norm epsilon, another activation) are refused, never approximated.

The converted ``log_prob`` is transformers' log-likelihood of the whole sequence (every position scored, the last
one included: transformers' own ``labels=`` loss drops it) to float rounding; the tests hold 1e-9 nats in float64.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch

from ..data.palette import ColorPalette
from ..models.image_gpt import NORM_EPS, ImageGPT
from ..models.modeling_prior import _grid as grid_size
from ..pipelines import PixelPriorPipeline
from .checkpoints import as_dtype, check_layout, read_state_dict

LAYOUT = "transformers' ImageGPTForCausalImageModeling"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROCESSOR_FILE = "preprocessor_config.json"
# The causal-mask buffers older transformers versions saved with every layer: no weights in them.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_LAYER = {  # transformers' per-layer key -> (pixelprior key, transposed)
    "ln_1.weight": ("norm1.weight", False),
    "attn.c_attn.weight": ("attn.qkv.weight", True),
    "attn.c_attn.bias": ("attn.qkv.bias", False),
    "attn.c_proj.weight": ("attn.proj.weight", True),
    "attn.c_proj.bias": ("attn.proj.bias", False),
    "ln_2.weight": ("norm2.weight", False),
    "mlp.c_fc.weight": ("mlp.0.weight", True),
    "mlp.c_fc.bias": ("mlp.0.bias", False),
    "mlp.c_proj.weight": ("mlp.2.weight", True),
    "mlp.c_proj.bias": ("mlp.2.bias", False),
}
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}  # transformers' activation_function -> pixelprior's


# ------------------------------------------------------------------------------------------------ the files
def resolve_source(
    source: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> str:
    """A local folder with the files of a transformers Image GPT: ``source`` itself, or a download of that Hub repo.

    The download is the pipelines' (:func:`pixelprior.pipelines.hub.resolve_pretrained_path`: ``*.json``,
    ``*.safetensors``, ``*.md``), plus ``pytorch_model.bin`` when the repository has no ``model.safetensors`` (it is
    then read with ``weights_only=True``, never unpickled freely). With ``local_files_only=True`` (or
    ``HF_HUB_OFFLINE=1``) the Hugging Face cache is read without a network.
    """
    from ..pipelines.hub import resolve_pretrained_path

    path = os.fspath(source)
    if not os.path.isdir(path) and (os.path.exists(path) or path.count("/") != 1):
        raise ValueError(
            f"Expected a transformers Image GPT folder or a Hub repository id 'owner/name', got {path!r}."
        )
    kwargs = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    folder = resolve_pretrained_path(path, **kwargs)
    if not os.path.isdir(path) and not os.path.isfile(os.path.join(folder, WEIGHT_FILES[0])):
        import huggingface_hub

        huggingface_hub.hf_hub_download(path, WEIGHT_FILES[1], **kwargs)
    return folder


def read_hf_config(folder: str) -> dict[str, Any]:
    """``config.json`` of a transformers Image GPT folder, checked to be one."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"Expected a transformers Image GPT folder with a config.json, got {folder!r}.")
    with open(path) as f:
        config = json.load(f)
    if not isinstance(config, dict) or config.get("model_type") != "imagegpt":
        got = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"Expected model_type 'imagegpt' in {path}, got {got!r}.")
    return config


def weight_file(folder: str) -> str:
    """The weights of the folder: ``model.safetensors``, else ``pytorch_model.bin``."""
    for name in WEIGHT_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise ValueError(f"Expected weights ({' or '.join(WEIGHT_FILES)}) in {folder!r}, got neither.")


def read_palette(folder: str, num_colors: int) -> ColorPalette:
    """The colour clusters of ``preprocessor_config.json`` (``[-1, 1]`` RGB) as a palette on ``[0, 1]``."""
    path = os.path.join(folder, PROCESSOR_FILE)
    if not os.path.isfile(path):
        raise ValueError(
            f"Expected the image processor's colour clusters in {path} (pass palette=False / --no_palette to convert "
            "the model alone), got no such file."
        )
    with open(path) as f:
        clusters = json.load(f).get("clusters")
    clusters = torch.tensor(clusters, dtype=torch.float64) if clusters is not None else None
    if clusters is None or clusters.shape != (num_colors, 3):
        got = None if clusters is None else tuple(clusters.shape)
        raise ValueError(f"Expected {num_colors} RGB clusters in {path}, got clusters of shape {got}.")
    if not bool((clusters.abs() <= 1 + 1e-6).all()):  # k-means centres of [-1, 1] pixels, to float rounding
        raise ValueError(f"Expected clusters on the [-1, 1] scale in {path}, got values outside it.")
    return ColorPalette(((clusters + 1) / 2).clamp(0, 1))


# ------------------------------------------------------------------------------------------ the conversion
def _check_supported(config: dict[str, Any]) -> None:
    """Refuse transformers settings that pixelprior's ImageGPT does not compute (instead of approximating them)."""
    D = config.get("n_embd")
    checks = [
        ("activation_function", config.get("activation_function", "quick_gelu") in _ACTIVATIONS, sorted(_ACTIVATIONS)),
        ("scale_attn_weights", config.get("scale_attn_weights", True) is True, True),
        ("scale_attn_by_inverse_layer_idx", config.get("scale_attn_by_inverse_layer_idx", False) is False, False),
        ("n_inner", config.get("n_inner") in (None, 4 * D if isinstance(D, int) else None), f"null or 4 n_embd = {D}"),
        ("layer_norm_epsilon", math.isclose(config.get("layer_norm_epsilon", NORM_EPS), NORM_EPS), NORM_EPS),
        ("add_cross_attention", not config.get("add_cross_attention", False), False),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(
                f"Expected {name} {expected} in the Image GPT config (what pixelprior's ImageGPT computes), got "
                f"{config.get(name)!r}."
            )


def prior_config(
    config: dict[str, Any], sample_size: int | tuple[int, int] | None = None, dropout: float | None = None
) -> dict[str, Any]:
    """The :class:`~pixelprior.ImageGPT` arguments of a transformers Image GPT ``config.json``.

    Args:
        config: the transformers config.
        sample_size: the grid; default the ``sqrt(n_positions)`` square (32 for the released models). Any ``(H, W)``
            with ``H W <= n_positions`` is exact: the model then reads the first ``H W`` positions.
        dropout: default the config's (its ``attn_pdrop``, ``resid_pdrop`` and ``embd_pdrop`` must then agree).
    """
    _check_supported(config)
    for name in ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size"):
        if not isinstance(config.get(name), int) or config[name] < 1:
            raise ValueError(
                f"Expected {name} to be a positive int in the Image GPT config, got {config.get(name)!r}."
            )
    positions = config["n_positions"]
    if sample_size is None:
        side = math.isqrt(positions)
        if side * side != positions:
            raise ValueError(f"Expected a square n_positions or an explicit sample_size, got n_positions={positions}.")
        sample_size = side
    H, W = grid_size(sample_size)
    if H * W > positions:
        raise ValueError(f"Expected a sample_size with at most n_positions={positions} pixels, got {(H, W)}.")
    if dropout is None:
        drops = {config.get(k, 0.1) for k in ("attn_pdrop", "resid_pdrop", "embd_pdrop")}
        if len(drops) != 1:
            raise ValueError(
                f"Expected equal attn/resid/embd dropouts in the config, or an explicit dropout, got {drops}."
            )
        dropout = drops.pop()
    return dict(
        sample_size=sample_size if isinstance(sample_size, int) else (H, W),
        in_channels=1,
        num_values=config["vocab_size"] - 1,
        hidden_channels=config["n_embd"],
        num_layers=config["n_layer"],
        num_heads=config["n_head"],
        dropout=float(dropout),
        norm_type="rms_norm",
        activation=_ACTIVATIONS[config.get("activation_function", "quick_gelu")],
    )


def expected_layout(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an ``ImageGPTForCausalImageModeling`` state dict of this config."""
    D, V = config["n_embd"], config["vocab_size"]
    per_layer = {
        "ln_1.weight": (D,),
        "attn.c_attn.weight": (D, 3 * D),
        "attn.c_attn.bias": (3 * D,),
        "attn.c_proj.weight": (D, D),
        "attn.c_proj.bias": (D,),
        "ln_2.weight": (D,),
        "mlp.c_fc.weight": (D, 4 * D),
        "mlp.c_fc.bias": (4 * D,),
        "mlp.c_proj.weight": (4 * D, D),
        "mlp.c_proj.bias": (D,),
    }
    layout = {
        "transformer.wte.weight": (V, D),
        "transformer.wpe.weight": (config["n_positions"], D),
        "transformer.ln_f.weight": (D,),
        "lm_head.weight": (V - 1, D),
    }
    for n in range(config["n_layer"]):
        layout.update({f"transformer.h.{n}.{key}": shape for key, shape in per_layer.items()})
    return layout


def convert_state_dict(
    state: dict[str, torch.Tensor], config: dict[str, Any], sequence_length: int
) -> dict[str, torch.Tensor]:
    """transformers' ``ImageGPTForCausalImageModeling`` weights -> :class:`~pixelprior.ImageGPT`'s (the table above).

    Raises:
        ValueError: listing the missing and unexpected keys, or the wrong shapes, when ``state`` is not that layout.
    """
    ignored = frozenset(k for k in state if k.startswith("transformer.h.") and k.endswith(IGNORED_SUFFIXES))
    check_layout(state, expected_layout(config), LAYOUT, ignored)
    K = config["vocab_size"] - 1
    wte = state["transformer.wte.weight"]
    out = {
        "token_embedding.weight": wte[:K],
        "start_embedding.weight": wte[K:],
        "position_embedding.weight": state["transformer.wpe.weight"][:sequence_length],
        "norm.weight": state["transformer.ln_f.weight"],
        "head.weight": state["lm_head.weight"],
    }
    for n in range(config["n_layer"]):
        for key, (target, transposed) in _LAYER.items():
            value = state[f"transformer.h.{n}.{key}"]
            out[f"blocks.{n}.{target}"] = value.t() if transposed else value
    return {key: value.contiguous() for key, value in out.items()}


def convert_imagegpt(
    source: str | os.PathLike,
    *,
    sample_size: int | tuple[int, int] | None = None,
    dropout: float | None = None,
    palette: bool = True,
    dtype: torch.dtype | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> PixelPriorPipeline:
    """A transformers Image GPT (folder or Hub id) as a :class:`~pixelprior.PixelPriorPipeline`.

    Args:
        source: a folder with ``config.json``, the weights and ``preprocessor_config.json``, or a Hub repository id
            such as ``"openai/imagegpt-small"``.
        sample_size: the grid (default the square of ``n_positions``: 32 for the released models).
        dropout: the converted model's dropout (for fine-tuning); default the config's.
        palette: attach the colour clusters (a :class:`~pixelprior.data.ColorPalette`), so that the pipeline returns
            RGB images; ``False`` converts the model alone (its outputs are then cluster ids).
        dtype: the converted model's dtype; default the checkpoint's (float32 for the released models).
        cache_dir, revision, token, local_files_only: for a Hub id (see :func:`resolve_source`).

    Returns:
        The pipeline, in eval mode (save it with ``save_pretrained``: safetensors only).

    Example:
        >>> from pixelprior.converters import convert_imagegpt
        >>> pipe = convert_imagegpt("openai/imagegpt-small")  # doctest: +SKIP
        >>> images = pipe(batch_size=4).images  # doctest: +SKIP
    """
    folder = resolve_source(
        source, cache_dir=cache_dir, revision=revision, token=token, local_files_only=local_files_only
    )
    config = read_hf_config(folder)
    kwargs = prior_config(config, sample_size, dropout)
    colors = read_palette(folder, kwargs["num_values"]) if palette else None
    state = read_state_dict(weight_file(folder))
    weights = convert_state_dict(state, config, math.prod(grid_size(kwargs["sample_size"])))
    prior = as_dtype(ImageGPT(**kwargs), dtype or weights["token_embedding.weight"].dtype)
    prior.load_state_dict(weights, strict=True)
    return PixelPriorPipeline(prior.eval(), palette=colors)
