"""Tile images into one grid image (for sample sheets written by the CLI and, later, by training)."""

from __future__ import annotations

import math

from PIL import Image


def make_image_grid(
    images: list[Image.Image], cols: int | None = None, padding: int = 2, scale: int = 1, background: int = 128
) -> Image.Image:
    """Tile equally sized images row by row, ``padding`` gray pixels between and around them.

    Args:
        images: at least one PIL image, all of one size and mode.
        cols: images per row; ``ceil(sqrt(len(images)))`` by default (the last row may be partly empty).
        padding: pixels between neighbours and around the border, before scaling.
        scale: integer nearest-neighbour magnification of the whole grid (tiny 28x28 digits read better at 4).
        background: gray level (0-255) of the padding, mid-gray by default so that black-background digits
            stay apart.

    Returns:
        One image of size ``(scale * (cols * (w + padding) + padding), scale * (rows * (h + padding) + padding))``.
    """
    if not images:
        raise ValueError("Expected at least one image, got an empty list.")
    size, mode = images[0].size, images[0].mode
    if any(image.size != size or image.mode != mode for image in images):
        raise ValueError(f"Expected images of one size and mode, got {sorted({(i.size, i.mode) for i in images})}.")
    for name, value, low in (("padding", padding, 0), ("scale", scale, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"Expected {name} to be an int >= {low}, got {value!r}.")
    cols = cols or math.ceil(math.sqrt(len(images)))
    if not isinstance(cols, int) or cols < 1:
        raise ValueError(f"Expected cols to be a positive int, got {cols!r}.")
    rows = math.ceil(len(images) / cols)
    step_w, step_h = size[0] + padding, size[1] + padding
    bands = len(images[0].getbands())
    grid_size = (cols * step_w + padding, rows * step_h + padding)
    grid = Image.new(mode, grid_size, color=background if bands == 1 else (background,) * bands)
    for k, image in enumerate(images):
        grid.paste(image, (padding + (k % cols) * step_w, padding + (k // cols) * step_h))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    return grid
