"""Exact conversions between image files and a pixel prior's grids, for lossless coding and scoring.

A grid of ``K = num_values`` levels is shown as 8-bit values ``round(255 k / (K - 1))`` (through
:func:`pixelprior.distributions.bins_to_images`, the one bins -> float conversion); an image belongs to a model only if
every pixel is one of those levels, so that the grid and the file determine each other exactly. Binary grids are
written as 1-bit PNGs (mode ``"1"``), gray ones as ``"L"``, RGB ones as ``"RGB"``.

Unlike the training data path (:mod:`pixelprior.data.images`: any 8-bit image, resized, requantized), nothing here
resizes, converts a mode or requantizes: an image of the wrong size, mode or levels is a ``ValueError`` naming it.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image

from ..distributions import bins_to_images, images_to_bins

_GRAY_MODES = ("1", "L")


def grid_levels(x: torch.Tensor, num_values: int) -> np.ndarray:
    """8-bit levels of a grid: ``round(255 k / (num_values - 1))``.

    Shapes:
        x: ``(C, H, W)`` long -> ``(H, W, C)`` uint8
    """
    levels = torch.round(bins_to_images(x.cpu(), num_values, dtype=torch.float64) * 255).to(torch.uint8)
    return levels.permute(1, 2, 0).numpy()


def grid_to_image(x: torch.Tensor, num_values: int) -> Image.Image:
    """A PIL image of a grid of 1 or 3 channels (mode ``"1"`` for binary gray grids).

    Shapes:
        x: ``(C, H, W)`` long -> an ``H x W`` image
    """
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"Expected a grid of shape (1 or 3, H, W), got {tuple(x.shape)}.")
    levels = grid_levels(x, num_values)
    if x.shape[0] == 3:
        return Image.fromarray(levels, "RGB")
    image = Image.fromarray(levels[..., 0], "L")
    return image.convert("1") if num_values == 2 else image  # levels 0 and 255 only: an exact 1-bit image


def image_to_grid(
    image: Image.Image, num_values: int, channels: int, size: tuple[int, int], name: str
) -> torch.Tensor:
    """The grid an image file holds, exactly, or a ``ValueError`` naming the file and what is wrong with it.

    Args:
        image: an opened PIL image.
        num_values: the model's values per channel (its levels: ``round(255 k / (num_values - 1))``).
        channels: the model's channels, 1 (modes ``"1"`` and ``"L"``) or 3 (mode ``"RGB"``).
        size: the model's ``(H, W)``.
        name: the file's name, for the messages.

    Shapes:
        -> ``(C, H, W)`` long
    """
    modes = _GRAY_MODES if channels == 1 else ("RGB",)
    if image.mode not in modes:
        raise ValueError(
            f"Expected an image of mode {' or '.join(modes)} for this model, got mode {image.mode} in {name}."
        )
    if (image.height, image.width) != tuple(size):
        raise ValueError(
            f"Expected an image of {size[0]}x{size[1]} (HxW) for this model, got {image.height}x{image.width} in "
            f"{name}."
        )
    levels = np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    levels = torch.from_numpy(levels.reshape(image.height, image.width, channels).copy()).permute(2, 0, 1)
    bins = images_to_bins(levels.double() / 255, num_values)  # (C, H, W) long
    exact = torch.from_numpy(grid_levels(bins, num_values)).permute(2, 0, 1)
    if not torch.equal(exact, levels):
        allowed = sorted(set(grid_levels(torch.arange(num_values).view(1, 1, -1), num_values).flatten().tolist()))
        shown = ", ".join(map(str, allowed[:6])) + (", ..." if len(allowed) > 6 else "")
        bad = sorted(set(levels[exact != levels].tolist()))[:5]
        raise ValueError(
            f"Expected the {num_values} levels of this model ({shown}) in every pixel, got values such as {bad} in "
            f"{name}; quantize the image first (lossless coding keeps pixels as they are)."
        )
    return bins


def read_image_grid(path: str | os.PathLike, num_values: int, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """:func:`image_to_grid` of an image file; an unreadable file is a ``ValueError`` naming it.

    Shapes:
        -> ``(C, H, W)`` long
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image_to_grid(image, num_values, channels, size, os.fspath(path))
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"Expected an image file, got {os.fspath(path)!r} ({error}).") from None


def png_bits(x: torch.Tensor, num_values: int) -> torch.Tensor:
    """Bits of each grid written as an optimized PNG (PIL, ``optimize=True``): a generic compressor's code length.

    Shapes:
        x: ``(B, C, H, W)`` long -> ``(B,)`` float64
    """
    sizes = []
    for grid in x:
        buffer = io.BytesIO()
        grid_to_image(grid, num_values).save(buffer, format="PNG", optimize=True)
        sizes.append(8 * buffer.tell())
    return torch.tensor(sizes, dtype=torch.float64)
