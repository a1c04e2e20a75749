"""The ``--palette`` option: RGB training images as colour ids, as Image GPT trains (:mod:`pixelprior.data.palette`).

``--palette K`` fits a :class:`~pixelprior.data.ColorPalette` of ``K`` colours (seeded k-means, ``--seed``) on the
run's training images, once, before the first step; ``--palette FILE`` reads a saved one (a ``palette.safetensors``
file, a palette folder, or a pipeline folder with a ``palette`` component). Both splits are then encoded to
``(N, 1, H, W)`` ids of the nearest colours, which the model learns (``in_channels=1``, ``num_values=K``), and the
saved pipeline holds the palette as its ``palette`` component, so it samples RGB images.

The palette is part of the run: a checkpoint holds it (``palette.safetensors``), ``--palette`` is one of the flags a
resume compares, and a resumed run takes the checkpoint's palette instead of fitting again (a missing or corrupt
palette file stops the resume naming it, unless ``--allow_inexact_resume``; a ``--palette FILE`` that no longer holds
the run's palette is refused).
"""

from __future__ import annotations

import os

import torch

from ..data import ColorPalette, GridDataset
from ..data.palette import PRETRAINED_FILE

PALETTE_FILE = PRETRAINED_FILE  # its name in a checkpoint folder too
ENCODE_CHUNK = 1024  # images encoded at a time: (chunk * H * W) distances to every colour


def is_palette_size(spec: str) -> bool:
    return spec.isdigit()


def palette_spec_ok(spec: str) -> bool:
    """Whether ``spec`` is a number of colours (>= 2) or names an existing path (its contents are read later)."""
    if is_palette_size(spec):
        return int(spec) >= 2
    return os.path.exists(os.path.expanduser(spec))


def read_palette(spec: str) -> ColorPalette:
    """The saved palette ``spec`` names: a ``palette.safetensors`` file, a palette folder or a pipeline folder.

    Raises:
        ValueError: for a path that holds no palette, or a file that is not one.
    """
    path = os.path.expanduser(spec)
    if os.path.isdir(os.path.join(path, "palette")):  # a pipeline folder
        path = os.path.join(path, "palette")
    if os.path.isdir(path):
        return ColorPalette.from_pretrained(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"Expected --palette to be a number of colours or a saved palette, got {spec!r}: no such file."
        )
    try:
        return ColorPalette.load(path)
    except Exception as error:  # safetensors' errors vary with the damage; the file is named, the reason kept
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"Expected --palette {spec!r} to be a palette file (safetensors), got: {reason}") from None


def same_palette(a: ColorPalette, b: ColorPalette) -> bool:
    return a.num_values == b.num_values and torch.equal(a.centers, b.centers)


def fit_palette(spec: str, train: GridDataset, num_images: int | None, seed: int) -> ColorPalette:
    """The palette of ``--palette spec``: fitted on the first ``num_images`` training images (all when None), or
    read from the file it names.

    Raises:
        ValueError: for images that are not RGB, or a saved palette of other pixel levels than the data's.
    """
    if train.in_channels != 3:
        raise ValueError(
            f"Expected RGB training images for --palette (3 channels), got {train.in_channels} channel(s)."
        )
    if not is_palette_size(spec):
        palette = read_palette(spec)
        if palette.num_values != train.num_values:
            raise ValueError(
                f"Expected --palette {spec!r} to be a palette of {train.num_values}-level pixels (the data's), got "
                f"one of {palette.num_values}-level pixels."
            )
        return palette
    images = train.x if num_images is None else train.x[:num_images]
    return ColorPalette.fit(images, num_colors=int(spec), num_values=train.num_values, seed=seed)


def encode_dataset(palette: ColorPalette, dataset: GridDataset) -> GridDataset:
    """``dataset``'s RGB images as the ids of their nearest colours (labels kept).

    Shapes:
        dataset.x: ``(N, 3, H, W)`` -> ``(N, 1, H, W)`` ids in ``[0, num_colors)``
    """
    ids = [palette.encode(chunk).to(torch.int16) for chunk in dataset.x.split(ENCODE_CHUNK)]
    x = torch.cat(ids) if ids else torch.zeros(0, 1, *dataset.sample_size, dtype=torch.int16)
    return GridDataset(
        x, palette.num_colors, labels=dataset.labels, num_classes=dataset.num_classes, class_names=dataset.class_names
    )


def read_checkpoint_palette(checkpoint: str) -> ColorPalette:
    """The palette a checkpoint folder holds (``palette.safetensors``).

    Raises:
        StateFileError: naming the file, when it is missing or is not a palette file.
    """
    from .resume import StateFileError

    path = os.path.join(checkpoint, PALETTE_FILE)
    if not os.path.isfile(path):
        raise StateFileError(f"{path} (the colour palette) is missing")
    try:
        return ColorPalette.load(path)
    except Exception as error:  # safetensors' errors vary with the damage; the file is named, the reason kept
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StateFileError(f"{path} (the colour palette) is corrupt ({reason})") from None
