"""Codes files: the integer codes of a VQ-VAE as a dataset, one safetensors file checked in full when it is read.

A codes file (written by :func:`save_codes`, through ``pixelprior encode`` / :func:`pixelprior.data.encode_to_file`)
holds

* tensors ``{split}_codes``: ``(N, 1, h, w)`` integer codes in ``[0, K)``, and ``{split}_labels``: ``(N,)`` integer
  labels in ``[0, num_classes)`` when the image dataset has labels (then every split has them);
* string metadata (safetensors keeps ``str -> str``; structured values are JSON): ``format`` (``pixelprior.codes``),
  ``vqvae_path`` (the absolute folder, or the Hub id, of the VQModel), ``vqvae_config`` (its configuration as JSON)
  and ``vqvae_config_sha256`` (the VQModel's identity, :func:`pixelprior.vqmodel.vqvae_identity`), ``num_values``
  (= K), ``latent_size`` (``[h, w]``), ``dataset``, ``splits``, ``num_classes``.

Reading checks everything a prior relies on and names the file in a ``ValueError`` otherwise: that it is a complete
safetensors file of this format (:func:`codes_metadata`: every metadata key, its type, the identity hash, the codebook
size and latent grid of the recorded VQModel config, each tensor's name, dtype and shape from the header, one grid
for every split) and, before a split is served (:func:`load_codes`), its values and labels, and that the VQModel it
names still exists with the same identity. :func:`load_code_splits` gives a trainer both splits and the checked
VQModel itself in one call, before its first step. Nothing is pickled.

Example:
    >>> from pixelprior.data import encode_to_file, load_codes, codes_metadata
    >>> encode_to_file("runs/vqvae", "mnist5k", "runs/codes.safetensors")  # doctest: +SKIP
    >>> train = load_codes("runs/codes.safetensors", "train")  # doctest: +SKIP
    >>> codes_metadata("runs/codes.safetensors")["latent_size"]  # doctest: +SKIP
    [7, 7]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..vqmodel import load_vqmodel, load_vqmodel_config, vqvae_folder, vqvae_identity, vqvae_latent_size
from .grid import SPLITS, GridDataset

if TYPE_CHECKING:
    from diffusers import VQModel

FORMAT = "pixelprior.codes"
# metadata keys whose values are JSON (the rest are plain strings)
_JSON_KEYS = ("num_values", "latent_size", "vqvae_config", "splits", "num_classes")
_STRING_KEYS = ("format", "vqvae_path", "vqvae_config_sha256", "dataset")
# safetensors' names of the integer dtypes (codes and labels must be integers: a float label is no class)
_INTEGER_DTYPES = ("I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8")


def save_codes(
    path: str,
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    *,
    vqvae_path: str,
    vqvae_config: Mapping[str, Any],
    dataset: str,
    num_classes: int | None = None,
) -> None:
    """Write code grids and their provenance to one safetensors file (atomically: a failed write leaves any previous
    file at ``path`` untouched).

    Args:
        path: the ``.safetensors`` file to write.
        splits: split name -> ``(codes (N, 1, h, w) integer, labels (N,) integer or None)``; every split has one grid
            size, and labels in every split or in none.
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
        _check_codes_tensor(codes, split, num_values)
        if latent_size not in (None, list(codes.shape[2:])):
            raise ValueError(
                f"Expected every split on one grid {latent_size}, got {list(codes.shape[2:])} for {split}."
            )
        latent_size = list(codes.shape[2:])
        tensors[f"{split}_codes"] = codes.long().contiguous()
        if (labels is None) != (num_classes is None):
            raise ValueError(f"Expected labels in {split} exactly when num_classes is given, got {num_classes=}.")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(f"Expected {split} labels to be an integer tensor, got {labels!r:.80}.")
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
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_codes_tensor(codes: Any, split: str, num_values: int) -> None:
    if not isinstance(codes, torch.Tensor) or codes.ndim != 4 or codes.shape[1] != 1 or codes.is_floating_point():
        got = f"{codes.dtype} of shape {tuple(codes.shape)}" if isinstance(codes, torch.Tensor) else type(codes)
        raise ValueError(f"Expected {split} codes to be an integer tensor of shape (N, 1, h, w), got {got}.")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= num_values):
        raise ValueError(f"Expected {split} codes in [0, {num_values}), got [{int(codes.min())}, {int(codes.max())}].")


# ------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _TensorInfo:
    """What a safetensors header says of a tensor, read before any data is."""

    dtype: str
    shape: tuple[int, ...]


def _read_header(path: str) -> tuple[dict[str, str], dict[str, _TensorInfo]]:
    """The metadata and the tensors' dtypes and shapes of a safetensors file (no tensor data is read)."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(f"Expected a codes file written by `pixelprior encode`, got {path!r} (no such file).")
    if os.path.getsize(path) == 0:
        raise ValueError(f"Expected a codes file written by `pixelprior encode`, got {path!r}, which is empty.")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
            infos = {
                key: _TensorInfo(f.get_slice(key).get_dtype(), tuple(f.get_slice(key).get_shape())) for key in f.keys()
            }
    except (SafetensorError, OSError) as error:
        raise ValueError(
            f"Expected a complete safetensors codes file, got {path!r}, which is not one (truncated or another "
            f"format): {error}"
        ) from None
    return metadata, infos


def _parse_metadata(path: str, raw: Mapping[str, str]) -> dict[str, Any]:
    """The metadata with its JSON values decoded; every key present."""
    if raw.get("format") != FORMAT:
        raise ValueError(
            f"Expected a codes file written by `pixelprior encode` (format {FORMAT!r}), got {path!r} with format "
            f"{raw.get('format')!r}."
        )
    missing = [key for key in _STRING_KEYS + _JSON_KEYS if key not in raw]
    if missing:
        raise ValueError(f"Expected the metadata keys {missing} in the codes file {path!r}, which lacks them.")
    metadata: dict[str, Any] = dict(raw)
    for key in _JSON_KEYS:
        try:
            metadata[key] = json.loads(raw[key])
        except json.JSONDecodeError:
            raise ValueError(f"Expected JSON for {key!r} in the codes file {path!r}, got {raw[key]!r:.80}.") from None
    return metadata


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_metadata(path: str, meta: Mapping[str, Any]) -> None:
    """The metadata's types, and its agreement with the VQModel config it records."""
    problems = []
    if not _is_int(meta["num_values"], 2):
        problems.append(f"num_values an int >= 2, got {meta['num_values']!r}")
    latent = meta["latent_size"]
    if not (isinstance(latent, list) and len(latent) == 2 and all(_is_int(s, 1) for s in latent)):
        problems.append(f"latent_size [h, w] of positive ints, got {latent!r}")
    splits = meta["splits"]
    names = isinstance(splits, list) and all(isinstance(s, str) for s in splits)
    if not (names and splits and len(set(splits)) == len(splits) and set(splits) <= set(SPLITS)):
        problems.append(f"splits a non-empty list of distinct names among {list(SPLITS)}, got {splits!r}")
    if meta["num_classes"] is not None and not _is_int(meta["num_classes"], 1):
        problems.append(f"num_classes null or a positive int, got {meta['num_classes']!r}")
    if not meta["vqvae_path"]:
        problems.append("a vqvae_path, got ''")
    config = meta["vqvae_config"]
    if not isinstance(config, dict):
        problems.append(f"vqvae_config a JSON object, got {type(config).__name__}")
    if problems:
        raise ValueError(f"Expected in the metadata of the codes file {path!r}: {'; '.join(problems)}.")
    if vqvae_identity(config)[1] != meta["vqvae_config_sha256"]:
        raise ValueError(
            f"Expected vqvae_config_sha256 to be the hash of vqvae_config in {path!r}, got another: the metadata was "
            "edited or damaged."
        )
    try:
        num_codes, grid = int(config["num_vq_embeddings"]), list(vqvae_latent_size(config))
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ValueError(
            f"Expected a VQModel's config as vqvae_config in {path!r} (num_vq_embeddings, sample_size, "
            f"block_out_channels), got one without them ({type(error).__name__}: {error})."
        ) from None
    if meta["num_values"] != num_codes:
        raise ValueError(
            f"Expected num_values to be the VQModel's codebook size {num_codes} in {path!r}, got {meta['num_values']}."
        )
    if latent != grid:
        raise ValueError(f"Expected latent_size to be the VQModel's latent grid {grid} in {path!r}, got {latent}.")


def _check_tensor_infos(path: str, meta: Mapping[str, Any], infos: Mapping[str, _TensorInfo]) -> None:
    """Names, dtypes and shapes from the header: each split's codes on the latent grid, labels where expected."""
    kinds = ("codes", "labels") if meta["num_classes"] is not None else ("codes",)
    expected = {f"{split}_{kind}" for split in meta["splits"] for kind in kinds}
    if set(infos) != expected:
        missing, extra = sorted(expected - set(infos)), sorted(set(infos) - expected)
        raise ValueError(
            f"Expected the tensors {sorted(expected)} in {path!r} (splits {meta['splits']}, num_classes "
            f"{meta['num_classes']}), got {sorted(infos)}: missing {missing}, unexpected {extra}."
        )
    h, w = meta["latent_size"]
    for split in meta["splits"]:
        codes = infos[f"{split}_codes"]
        if codes.dtype not in _INTEGER_DTYPES or len(codes.shape) != 4 or codes.shape[1:] != (1, h, w):
            raise ValueError(
                f"Expected {split}_codes in {path!r} to be integer codes of shape (N, 1, {h}, {w}) (one channel, the "
                f"latent grid), got {codes.dtype} of shape {codes.shape}."
            )
        labels = infos.get(f"{split}_labels")
        if labels is not None and (labels.dtype not in _INTEGER_DTYPES or labels.shape != codes.shape[:1]):
            raise ValueError(
                f"Expected {split}_labels in {path!r} to be integer labels of shape ({codes.shape[0]},), got "
                f"{labels.dtype} of shape {labels.shape}."
            )


def codes_metadata(path: str) -> dict[str, Any]:
    """The provenance stored with a codes file, after checking the whole file but its values (a header read).

    Returns:
        ``{"format", "vqvae_path", "vqvae_config" (dict), "vqvae_config_sha256", "num_values" (int),
        "latent_size" ([h, w]), "dataset", "splits" (list), "num_classes" (int or None)}``.

    Raises:
        ValueError: naming the file, if it is missing, empty, truncated or not a safetensors file, lacks a metadata
            key, has a value of the wrong type, a config hash, codebook size or latent grid that disagrees with the
            recorded VQModel config, or a tensor that is missing, unexpected, not integer or off the latent grid.
    """
    raw, infos = _read_header(path)
    meta = _parse_metadata(path, raw)
    _check_metadata(path, meta)
    _check_tensor_infos(path, meta, infos)
    return meta


def check_vqvae_of_codes(path: str, meta: Mapping[str, Any]) -> str:
    """Check that the VQModel a codes file names still exists and is the one its codes came from (same config
    identity, so the same codebook size and grid); return the folder (or Hub id) to load it from.

    Only its config is read; :func:`load_code_splits` loads the weights too.
    """
    try:
        config = load_vqmodel_config(meta["vqvae_path"])
    except ValueError as error:
        raise ValueError(f"Expected the VQModel recorded in the codes file {path!r} to load: {error}") from None
    if vqvae_identity(config)[1] != meta["vqvae_config_sha256"]:
        raise ValueError(
            f"Expected the VQModel at {meta['vqvae_path']!r} to be the one the codes file {path!r} was encoded "
            "with, got a VQModel with another config: re-encode the dataset (pixelprior encode) with it."
        )
    return vqvae_folder(meta["vqvae_path"])


def _load_split(path: str, meta: Mapping[str, Any], split: str) -> GridDataset:
    """One split's tensors (only that split's are read), with their values checked."""
    with safe_open(path, framework="pt") as f:
        codes = f.get_tensor(f"{split}_codes")
        labels = f.get_tensor(f"{split}_labels") if meta["num_classes"] is not None else None
    num_values = meta["num_values"]
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= num_values):
        raise ValueError(
            f"Expected {split}_codes in [0, {num_values}) (the codebook size) in {path!r}, got values in "
            f"[{int(codes.min())}, {int(codes.max())}]."
        )
    if labels is not None and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= meta["num_classes"]):
        raise ValueError(
            f"Expected {split}_labels in [0, {meta['num_classes']}) in {path!r}, got labels in "
            f"[{int(labels.min())}, {int(labels.max())}]."
        )
    return GridDataset(codes, num_values=num_values, labels=labels, num_classes=meta["num_classes"])


def load_codes(path: str, split: str) -> GridDataset:
    """One split of a codes file as a dataset of ``(1, h, w)`` grids with ``num_values`` = the codebook size.

    The whole file is checked (:func:`codes_metadata`), then that the VQModel it names still exists and is the same
    (:func:`check_vqvae_of_codes`), then the split's values and labels.

    Example:
        >>> from pixelprior.data.codes import load_codes
        >>> train = load_codes("runs/codes.safetensors", "train")  # doctest: +SKIP
        >>> train.in_channels, train.num_values, train.sample_size  # doctest: +SKIP
        (1, 16, (7, 7))
    """
    meta = codes_metadata(path)
    if split not in meta["splits"]:
        raise ValueError(f"Expected split to be one of {meta['splits']} in {path!r}, got {split!r}.")
    check_vqvae_of_codes(path, meta)
    return _load_split(path, meta, split)


@dataclass
class CodeSplits:
    """Everything a prior over a codes file is trained and shipped with: both splits, and their VQModel."""

    train: GridDataset
    test: GridDataset
    vqvae: VQModel
    metadata: dict[str, Any]


def load_code_splits(path: str) -> CodeSplits:
    """The train and test splits of a codes file and the VQModel they were encoded with, all checked: call it before
    the first training step, so that no failure of the file or the VQModel can come after the work.

    Raises:
        ValueError: as :func:`load_codes` for either split, if the file lacks a train or test split, or if the
            VQModel's weights are missing or do not fit its config.
    """
    meta = codes_metadata(path)
    missing = [split for split in SPLITS if split not in meta["splits"]]
    if missing:
        raise ValueError(f"Expected the splits {list(SPLITS)} in the codes file {path!r}, got {meta['splits']}.")
    folder = check_vqvae_of_codes(path, meta)
    try:
        vqvae = load_vqmodel(folder)
    except ValueError as error:
        raise ValueError(f"Expected the VQModel recorded in the codes file {path!r} to load: {error}") from None
    train, test = (_load_split(path, meta, split) for split in SPLITS)
    return CodeSplits(train=train, test=test, vqvae=vqvae, metadata=meta)
