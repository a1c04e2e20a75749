"""Image folders: every image file under a folder, read into memory as 8-bit bins.

Layout (the torchvision ``ImageFolder`` convention, found recursively):

* splits: ``ROOT/train`` and ``ROOT/test`` (or ``ROOT/validation``, ``ROOT/val``) when ``ROOT/train`` and one of
  those exist; otherwise the whole tree, split once and for all by :func:`pixelprior.data.split.fixed_split`
  (10 % test, stratified by class, seed 0);
* labels: when every image lies under an immediate subfolder of the split's root (``ROOT/train/cat/...``), the
  subfolder is its class; classes are the sorted names over both splits, so both map a name to the same index.
  Otherwise (some image directly in the root) the images are unlabelled;
* files: the extensions in :data:`pixelprior.data.images.IMAGE_EXTENSIONS` (case-insensitive), in sorted path order;
  hidden files and folders (``.name``) are skipped;
* links: symlinked files and folders are followed, but each real file counts once (by its resolved path), and a
  symlinked folder that leads back to a folder on the way down (a loop) is skipped. A file reached in both splits, or
  (in a labelled folder) under two classes, is a ``ValueError`` naming both paths: no file is ever in both splits;
* modes, sizes and ``resolution``: :mod:`pixelprior.data.images` (gray when every image is gray, else RGB; one size
  unless ``resolution`` is given, checked over both splits).

The images are decoded into one uint8 array: folders whose images fit in memory (CIFAR-sized) are the target.
"""

from __future__ import annotations

import os

import numpy as np

from .images import IMAGE_EXTENSIONS, decode_images, inspect_images
from .split import fixed_split

TEST_FOLDERS = ("test", "validation", "val")


def _unreadable(error: OSError) -> None:
    raise ValueError(f"Expected a readable folder of images, got {error.filename!r}: {error.strerror or error}.")


def find_images(root: str) -> list[str]:
    """Paths of the image files under ``root`` (recursively), sorted; hidden files and folders are skipped.

    Symlinked folders are followed, except those that lead back to a folder on the way down (a loop, which would
    otherwise be walked until the path grows too long). The same real file may be found under several paths (links):
    :func:`load_image_folder` keeps one.
    """
    found = []
    walked = set()  # (class subfolder, real folder): a folder reached again within one class adds nothing
    for folder, subfolders, files in os.walk(root, followlinks=True, onerror=_unreadable):
        real = os.path.realpath(folder)
        top = _class_of(os.path.join(folder, "x"), root)
        keep = []
        for name in sorted(subfolders):
            target = os.path.realpath(os.path.join(folder, name))
            key = (top or name, target)
            if name.startswith(".") or real == target or real.startswith(target + os.sep) or key in walked:
                continue  # hidden; a loop (a link to a folder above); or walked already within this class
            walked.add(key)
            keep.append(name)
        subfolders[:] = keep
        found += [
            os.path.join(folder, f) for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return sorted(found)


def _class_of(path: str, root: str) -> str | None:
    """The immediate subfolder of ``root`` that holds ``path``, or ``None`` for an image directly in ``root``."""
    parts = os.path.relpath(path, root).split(os.sep)
    return parts[0] if len(parts) > 1 else None


def split_roots(root: str) -> tuple[str, str] | None:
    """``(train_root, test_root)`` when ``root`` has train / test subfolders, else ``None``."""
    train = os.path.join(root, "train")
    tests = [os.path.join(root, name) for name in TEST_FOLDERS if os.path.isdir(os.path.join(root, name))]
    return (train, tests[0]) if os.path.isdir(train) and tests else None


Parts = dict[str | None, tuple[str, list[str]]]  # split (None: the whole tree) -> (its root, its image paths)


def _one_path_per_file(
    parts: Parts, classes_of: dict[str | None, list[str | None]], labelled: bool
) -> tuple[Parts, dict[str | None, list[str | None]]]:
    """Keep each real file once (its first path); a file in two splits, or two classes, is an error naming both."""
    first: dict[str, tuple[str | None, str, str | None]] = {}  # real path -> (split, path, class)
    kept_parts, kept_classes = {}, {}
    for split, (part_root, paths) in parts.items():
        kept_paths, classes = [], []
        for path, label in zip(paths, classes_of[split], strict=True):
            real = os.path.realpath(path)
            if real not in first:
                first[real] = (split, path, label)
                kept_paths.append(path)
                classes.append(label)
                continue
            other_split, other_path, other_label = first[real]
            if other_split != split:
                raise ValueError(
                    f"Expected every image in one split, got {real!r} in the {other_split} split (as {other_path!r}) "
                    f"and in the {split} split (as {path!r})."
                )
            if labelled and other_label != label:
                raise ValueError(
                    f"Expected every image in one class, got {real!r} in class {other_label!r} (as {other_path!r}) "
                    f"and in class {label!r} (as {path!r})."
                )
        kept_parts[split], kept_classes[split] = (part_root, kept_paths), classes
    return kept_parts, kept_classes


def load_image_folder(
    root: str, split: str, resolution: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """The images of ``split`` in the folder ``root``, their labels and the class names.

    Args:
        root: the folder.
        split: ``"train"`` or ``"test"``.
        resolution: ``(H, W)`` to center-crop and resize every image to, or ``None`` (then all must share a size).

    Returns:
        ``x`` ``(N, C, H, W)`` uint8, ``labels`` ``(N,)`` int64 or ``None``, the sorted class names or ``None``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"Expected split to be 'train' or 'test', got {split!r}.")
    if not os.path.isdir(root):
        raise ValueError(f"Expected an image folder, got {root!r}, which is not a directory.")
    roots = split_roots(root)
    parts = (
        {s: (r, find_images(r)) for s, r in zip(("train", "test"), roots, strict=True)}
        if roots
        else {None: (root, find_images(root))}
    )
    if not any(paths for _, paths in parts.values()):
        raise ValueError(f"Expected image files ({', '.join(IMAGE_EXTENSIONS)}) under {root!r}, found none.")
    for name, (part_root, paths) in parts.items():
        if not paths:
            raise ValueError(f"Expected image files under {part_root!r} (the {name} split), found none.")

    # Labels and channels are decided over both splits, so that the two agree.
    classes_of = {name: [_class_of(p, r) for p in paths] for name, (r, paths) in parts.items()}
    labelled = all(c is not None for cs in classes_of.values() for c in cs)
    parts, classes_of = _one_path_per_file(parts, classes_of, labelled)
    class_names = sorted({c for cs in classes_of.values() for c in cs}) if labelled else None
    channels = inspect_images([p for _, paths in parts.values() for p in paths], resolution)

    if roots:
        paths, classes = parts[split][1], classes_of[split]
    else:
        paths, classes = parts[None][1], classes_of[None]
    index_of = {c: i for i, c in enumerate(class_names or [])}
    labels = np.array([index_of[c] for c in classes], dtype=np.int64) if labelled else None
    if not roots:
        index = fixed_split(len(paths), split, labels)
        paths = [paths[i] for i in index]
        labels = None if labels is None else labels[index]
    return decode_images(paths, channels, resolution), labels, class_names
