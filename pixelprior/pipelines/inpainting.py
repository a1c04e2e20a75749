"""Inputs of inpainting, as diffusers' inpainting pipelines take them: ``image`` and ``mask_image``.

Both may be PIL images, NumPy arrays or torch tensors (or lists of them), read by diffusers'
:class:`~diffusers.image_processor.VaeImageProcessor` without resizing:

* ``image``: values in ``[0, 1]`` (PIL: ``0..255``); ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` NumPy,
  ``(C, H, W)`` or ``(B, C, H, W)`` torch;
* ``mask_image``: one channel, **white (>= 0.5) = regenerate, black = keep**; one mask for the batch or one per
  image.

Sizes are checked, never resized: a wrong size is a ``ValueError``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor


def prepare_inpainting_inputs(
    image: PipelineImageInput,
    mask_image: PipelineImageInput,
    channels: int,
    size: tuple[int, int],
    batch_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``image`` and ``mask_image`` into tensors and check them against the expected grid.

    Args:
        image: the image(s) to complete, values in ``[0, 1]``.
        mask_image: white = regenerate, black = keep.
        channels: expected image channels (1 or 3).
        size: expected ``(H, W)``.
        batch_size: images wanted; a single image (and mask) is repeated to it, a batch of ``n`` images needs
            ``batch_size`` 1 (the default) or ``n``.

    Returns:
        ``images`` ``(B, C, H, W)`` float in ``[0, 1]`` and ``regenerate`` ``(B, 1, H, W)`` bool (True = white).
    """
    if image is None or mask_image is None:
        raise ValueError("Expected both image and mask_image for inpainting (white = regenerate), or neither.")
    image_processor = VaeImageProcessor(
        do_resize=False, do_normalize=False, do_convert_rgb=channels == 3, do_convert_grayscale=channels == 1
    )
    mask_processor = VaeImageProcessor(
        do_resize=False, do_normalize=False, do_binarize=True, do_convert_grayscale=True
    )
    images = image_processor.preprocess(image).float()  # (n, C, H, W) in [0, 1]
    mask = mask_processor.preprocess(mask_image)  # (m, 1, H, W) in {0, 1}
    height, width = size
    if images.ndim != 4 or tuple(images.shape[1:]) != (channels, height, width):
        raise ValueError(f"Expected image of shape (B, {channels}, {height}, {width}), got {tuple(images.shape)}.")
    if mask.ndim != 4 or tuple(mask.shape[1:]) != (1, height, width):
        raise ValueError(f"Expected mask_image of shape (B, 1, {height}, {width}), got {tuple(mask.shape)}.")
    n = len(images)
    if len(mask) not in (1, n):
        raise ValueError(f"Expected one mask_image or one per image ({n}), got {len(mask)}.")
    if n == 1:
        n = batch_size
    elif batch_size not in (1, n):
        raise ValueError(f"Expected batch_size 1 or {n} (the number of images), got {batch_size}.")
    images = images.expand(n, -1, -1, -1)
    regenerate = (mask > 0.5).expand(n, -1, -1, -1)
    return images, regenerate


def keep_mask_on_grid(regenerate: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Which cells of a coarser grid (a VQ-VAE's codes) are kept: those whose whole pixel cell is black.

    The image is cut into ``grid_size`` cells of ``(H / h) x (W / w)`` pixels, one per code (the block the encoder
    downsamples into it). A code is kept only when no pixel of its cell is to be regenerated, so every
    regenerated pixel lies in a regenerated code's cell.

    Shapes:
        regenerate: ``(B, 1, H, W)`` bool (True = regenerate) -> ``(B, 1, h, w)`` bool (True = keep)
    """
    (height, width), (h, w) = regenerate.shape[-2:], grid_size
    if height % h or width % w:
        raise ValueError(f"Expected an image size divisible by the code grid {(h, w)}, got {(height, width)}.")
    # (B, 1, H, W) -> (B, 1, h, w): a cell is regenerated if any of its pixels is
    regenerated_cells = F.max_pool2d(regenerate.float(), kernel_size=(height // h, width // w)) > 0
    return ~regenerated_cells
