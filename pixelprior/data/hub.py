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
    except ImportError:
        raise ValueError(
            "Expected the Hugging Face `datasets` package for an hf: dataset, but it is not installed: pip install "
            'datasets (or pip install "pixelprior[data]").'
        ) from None
    return datasets


def _open(name: str) -> dict[str, Any]:
    """The splits of the dataset ``name`` (a dict of ``datasets.Dataset``).

    Every failure to open it — a Hub id offline or unknown, a damaged saved folder — is a ``ValueError`` naming it.
    """
    datasets = _import_datasets()
    path = os.path.expanduser(name)
    saved = any(os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))
    try:
        loaded = datasets.load_from_disk(path) if saved else datasets.load_dataset(name)
    except (OSError, ValueError, KeyError) as error:
        # OSError: ConnectionError offline, DatasetNotFoundError, missing files; ValueError: pyarrow's ArrowInvalid
        where = "the folder saved with save_to_disk" if saved else "a Hub id (needs the network or its cache)"
        raise ValueError(
            f"Expected hf:{name} to open as {where}, got {type(error).__name__}: {str(error)[:300]}"
        ) from None
    return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)


def _pick(columns: list[str], given: str | None, defaults: tuple[str, ...], what: str) -> str | None:
    if given is not None:
        if given not in columns:
            raise ValueError(f"Expected the {what} column {given!r} among the columns {columns}.")
        return given
    return next((c for c in defaults if c in columns), None)


def _splits_of(name: str) -> dict[str, Any]:
    """``{"train": ..., "test": ...}`` (``test`` only when the dataset has one), keyed by pixelprior's split names."""
    splits = _open(name)
    train_key = "train" if "train" in splits else (next(iter(splits)) if len(splits) == 1 else None)
    test_key = next((k for k in TEST_SPLITS if k in splits), None)
    if train_key is None:
        raise ValueError(f"Expected a 'train' split (or a single split) in {name!r}, got splits {sorted(splits)}.")
    return {"train": (train_key, splits[train_key])} | ({"test": (test_key, splits[test_key])} if test_key else {})


def _encoded_images(datasets: Any, part: Any, column: str, where: str) -> tuple[list[str | bytes], list[str]]:
    """The encoded images (bytes or paths) of a column, without decoding them, and how errors name each row."""
    sources, names = [], []
    for row, item in enumerate(part.cast_column(column, datasets.Image(decode=False))[column]):
        name = f"row {row} of {where}"
        source = None if item is None else (item["bytes"] if item.get("bytes") is not None else item.get("path"))
        if source is None:
            raise ValueError(f"Expected an image in column {column!r} of every row, got none in {name}.")
        sources.append(source)
        names.append(name if isinstance(source, bytes) else f"{source!r} ({name})")
    return sources, names


def _labels(datasets: Any, part: Any, column: str, where: str) -> np.ndarray:
    """The integer labels of a column, checked: a ClassLabel or an integer column, every value a class ``>= 0``."""
    feature = part.features[column]
    dtype = getattr(feature, "dtype", None)
    if not isinstance(feature, datasets.ClassLabel) and not (
        isinstance(dtype, str) and dtype.startswith(("int", "uint"))
    ):
        raise ValueError(
            f"Expected the label column {column!r} of {where} to be a ClassLabel or integers, got {feature!r:.120}."
        )
    values = part[column]
    if any(v is None for v in values):
        raise ValueError(f"Expected a label in every row of column {column!r} of {where}, got empty ones.")
    labels = np.asarray(values, dtype=np.int64)
    if len(labels) and int(labels.min()) < 0:  # ClassLabel's -1 means "no label" (the unlabelled test set of some)
        raise ValueError(f"Expected labels >= 0 in column {column!r} of {where}, got {int(labels.min())}.")
    return labels


def load_hf(
    arg: str, split: str, resolution: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray | None, int | None, list[str] | None]:
    """The ``split`` of the Hugging Face dataset of the spec ``arg`` (``hf:`` stripped).

    Returns:
        ``x`` ``(N, C, H, W)`` uint8, ``labels`` ``(N,)`` int64 or ``None``, the number of classes or ``None``, the
        class names (a ``ClassLabel``'s) or ``None``.

    Raises:
        ValueError: the ``datasets`` package is missing, the dataset cannot be opened (offline, unknown, damaged), it
            lacks an image column, has labels that are not classes, or a row's image cannot be read (naming the row).
    """
    if split not in ("train", "test"):
        raise ValueError(f"Expected split to be 'train' or 'test', got {split!r}.")
    name, image_column, label_column = parse_hf_spec(arg)
    datasets = _import_datasets()
    parts = _splits_of(name)

    first = parts["train"][1]
    image_column = _pick(first.column_names, image_column, IMAGE_COLUMNS, "image")
    if image_column is None or not isinstance(first.features[image_column], datasets.Image):
        got = {c: type(f).__name__ for c, f in first.features.items()}
        raise ValueError(
            f"Expected an image column (a datasets.Image feature, named {IMAGE_COLUMNS} or given as "
            f"hf:NAME:IMAGE_COLUMN) in {name!r}, got columns {got}."
        )
    label_column = _pick(first.column_names, label_column, LABEL_COLUMNS, "label")

    # Encoded images (paths or bytes), read through pixelprior.data.images like an image folder.
    sources, names, labels = {}, {}, {}
    for key, (original, part) in parts.items():
        where = f"the {original!r} split of hf:{name}"
        sources[key], names[key] = _encoded_images(datasets, part, image_column, where)
        labels[key] = None if label_column is None else _labels(datasets, part, label_column, where)
    channels = inspect_images(sum(sources.values(), []), resolution, names=sum(names.values(), []))

    class_names = num_classes = None
    if label_column is not None:
        feature = first.features[label_column]
        if isinstance(feature, datasets.ClassLabel):
            class_names, num_classes = list(feature.names), feature.num_classes
        else:
            num_classes = int(max(int(part.max()) for part in labels.values() if len(part))) + 1

    if "test" in parts:
        chosen, chosen_names, chosen_labels = sources[split], names[split], labels[split]
    else:
        index = fixed_split(len(sources["train"]), split, labels["train"])
        chosen, chosen_names = [sources["train"][i] for i in index], [names["train"][i] for i in index]
        chosen_labels = None if labels["train"] is None else labels["train"][index]
    return decode_images(chosen, channels, resolution, names=chosen_names), chosen_labels, num_classes, class_names
