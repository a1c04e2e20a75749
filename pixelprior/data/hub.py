"""``hf:NAME``: image datasets of the Hugging Face ``datasets`` library, from the Hub or saved to disk.

Spec: ``hf:NAME[:IMAGE_COLUMN[:LABEL_COLUMN]]`` (so names and paths with ``:`` are not supported).

* ``NAME`` is a folder written by ``save_to_disk`` (read with ``datasets.load_from_disk``), or anything else
  ``datasets.load_dataset(NAME)`` accepts: a Hub id (``uoft-cs/cifar10``; needs the network or the local cache) or a
  local folder of data files.
* columns: the image column is ``IMAGE_COLUMN`` or the first of ``image``, ``img`` present, and must be a
  ``datasets.Image`` feature; the label column is ``LABEL_COLUMN`` or the first of ``label``, ``labels`` present
  (none: unlabelled). The number of classes is the ``ClassLabel``'s, else the largest label over both splits + 1.
* splits: ``train`` is the ``train`` split; ``test`` is the first of ``test``, ``validation``, ``valid``, ``val``.
  A dataset with a single split (or no test split) is split by :func:`pixelprior.data.split.fixed_split` (10 % test,
  stratified by label, seed 0).
* images go through :mod:`pixelprior.data.images` (modes, sizes, ``resolution``), channels decided over both splits.

``datasets`` is an optional dependency (``pip install "pixelprior[data]"``), imported only here.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .images import decode_images, inspect_images
from .split import fixed_split

IMAGE_COLUMNS, LABEL_COLUMNS = ("image", "img"), ("label", "labels")
TEST_SPLITS = ("test", "validation", "valid", "val")


def parse_hf_spec(arg: str) -> tuple[str, str | None, str | None]:
    """``"NAME[:IMAGE_COLUMN[:LABEL_COLUMN]]"`` -> ``(NAME, IMAGE_COLUMN or None, LABEL_COLUMN or None)``."""
    parts = arg.split(":")
    if not parts[0] or len(parts) > 3 or not all(parts[1:]):
        raise ValueError(f"Expected hf:NAME[:IMAGE_COLUMN[:LABEL_COLUMN]], got 'hf:{arg}'.")
    return parts[0], *(parts[1:] + [None] * (3 - len(parts)))


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "hf: datasets need the Hugging Face `datasets` package: pip install datasets "
            '(or pip install "pixelprior[data]").'
        ) from error
    return datasets


def _open(name: str) -> dict[str, Any]:
    """The splits of the dataset ``name`` (a dict of ``datasets.Dataset``)."""
    datasets = _import_datasets()
    path = os.path.expanduser(name)
    saved = any(os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))
    loaded = datasets.load_from_disk(path) if saved else datasets.load_dataset(name)
    return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)


def _pick(columns: list[str], given: str | None, defaults: tuple[str, ...], what: str) -> str | None:
    if given is not None:
        if given not in columns:
            raise ValueError(f"Expected the {what} column {given!r} among the columns {columns}.")
        return given
    return next((c for c in defaults if c in columns), None)


def load_hf(
    arg: str, split: str, resolution: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray | None, int | None, list[str] | None]:
    """The ``split`` of the Hugging Face dataset of the spec ``arg`` (``hf:`` stripped).

    Returns:
        ``x`` ``(N, C, H, W)`` uint8, ``labels`` ``(N,)`` int64 or ``None``, the number of classes or ``None``, the
        class names (a ``ClassLabel``'s) or ``None``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"Expected split to be 'train' or 'test', got {split!r}.")
    name, image_column, label_column = parse_hf_spec(arg)
    datasets = _import_datasets()
    splits = _open(name)
    train_key = "train" if "train" in splits else (next(iter(splits)) if len(splits) == 1 else None)
    test_key = next((k for k in TEST_SPLITS if k in splits), None)
    if train_key is None:
        raise ValueError(f"Expected a 'train' split (or a single split) in {name!r}, got splits {sorted(splits)}.")
    parts = {"train": splits[train_key]} | ({"test": splits[test_key]} if test_key else {})

    first = parts["train"]
    image_column = _pick(first.column_names, image_column, IMAGE_COLUMNS, "image")
    if image_column is None or not isinstance(first.features[image_column], datasets.Image):
        got = {c: type(f).__name__ for c, f in first.features.items()}
        raise ValueError(
            f"Expected an image column (a datasets.Image feature, named {IMAGE_COLUMNS} or given as "
            f"hf:NAME:IMAGE_COLUMN) in {name!r}, got columns {got}."
        )
    label_column = _pick(first.column_names, label_column, LABEL_COLUMNS, "label")

    # Encoded images (paths or bytes), read through pixelprior.data.images like an image folder.
    sources, labels = {}, {}
    for key, part in parts.items():
        column = part.cast_column(image_column, datasets.Image(decode=False))[image_column]
        sources[key] = [item["bytes"] if item.get("bytes") is not None else item["path"] for item in column]
        labels[key] = None if label_column is None else np.asarray(part[label_column], dtype=np.int64)
    channels = inspect_images([s for part in sources.values() for s in part], resolution)

    class_names = num_classes = None
    if label_column is not None:
        feature = first.features[label_column]
        if isinstance(feature, datasets.ClassLabel):
            class_names, num_classes = list(feature.names), feature.num_classes
        else:
            num_classes = int(max(int(part.max()) for part in labels.values() if len(part))) + 1

    if "test" in parts:
        chosen, chosen_labels = sources[split], labels[split]
    else:
        index = fixed_split(len(sources["train"]), split, labels["train"])
        chosen = [sources["train"][i] for i in index]
        chosen_labels = None if labels["train"] is None else labels["train"][index]
    return decode_images(chosen, channels, resolution), chosen_labels, num_classes, class_names
