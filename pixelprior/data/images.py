"""Image files -> 8-bit arrays: the one place that reads images, decides their channels and resizes them.

Image folders and Hugging Face datasets give encoded images (a path or the file's bytes); they are read in two passes:
:func:`inspect_images` reads only the headers, decides the channels of the whole source and checks the sizes, then
:func:`decode_images` decodes them into ``(N, C, H, W)`` uint8. Sources that come as arrays (``mnist5k``, ``digits``,
torchvision's files) are resized by :func:`resize_array`, through the same :func:`fit_image`.

Modes (PIL's):

* gray: ``1`` and ``L`` (and ``LA``); colour: ``RGB``, and ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBA``,
  ``PA``, converted to RGB. A source is gray (``C = 1``) when every image is gray, else RGB (``C = 3``; gray images
  are repeated over the three channels).
* alpha (``RGBA``, ``LA``, ``PA``, or a transparent colour key): accepted only when every pixel is opaque, then
  dropped.
  Transparent images raise ``ValueError``: flattening them onto a background is the user's choice, not ours.
* 16-bit and float images (``I;16``, ``I``, ``F``) raise ``ValueError``: every source is 8-bit.

Resizing (``resolution``, an int for a square or ``(H, W)``): the largest centred box with the target's aspect ratio
is cropped and resized to the target with PIL's (antialiased) bilinear filter, as diffusers' training scripts do
(``Resize`` + ``CenterCrop``). Images already of the target size are left untouched.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Sequence

import numpy as np
from PIL import Image

# What an encoded image may be given as: its file's path, or the file's bytes.
ImageSource = str | os.PathLike | bytes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
GRAY_MODES = ("1", "L", "LA")
COLOR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


def parse_resolution(resolution: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``None``, a positive int ``s`` (-> ``(s, s)``) or ``(H, W)`` -> ``(H, W)`` or ``None``."""
    if resolution is None:
        return None
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        resolution = (resolution, resolution)
    if (
        not isinstance(resolution, (tuple, list))
        or len(resolution) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in resolution)
    ):
        raise ValueError(f"Expected resolution to be a positive int or (H, W) of positive ints, got {resolution!r}.")
    return (resolution[0], resolution[1])


def open_image(source: ImageSource) -> Image.Image:
    """Open an image lazily (PIL reads the header now, the pixels when asked)."""
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def _name(source: ImageSource, index: int) -> str:
    return f"image {index}" if isinstance(source, bytes) else os.fspath(source)


def inspect_images(sources: Sequence[ImageSource], resolution: tuple[int, int] | None) -> int:
    """Read the headers of every image of a source; return its channels (1 or 3) and check that it is usable.

    Raises:
        ValueError: if there is no image, an image has a mode that is not 8-bit or transparent pixels, or the images
            have several sizes and no ``resolution`` is given (the message names the sizes found).
    """
    if not sources:
        raise ValueError("Expected at least one image, got none.")
    sizes: Counter = Counter()
    gray = True
    for index, source in enumerate(sources):
        with open_image(source) as image:
            if image.mode not in GRAY_MODES + COLOR_MODES:
                raise ValueError(
                    f"Expected 8-bit images (PIL modes {', '.join(GRAY_MODES + COLOR_MODES)}), "
                    f"got mode {image.mode!r} in {_name(source, index)}."
                )
            gray = gray and image.mode in GRAY_MODES
            sizes[image.size] += 1
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                _opaque(image, _name(source, index))  # decodes the image: only those with alpha
    if resolution is None and len(sizes) > 1:
        found = ", ".join(f"{h}x{w} ({n} images)" for (w, h), n in sorted(sizes.items()))
        raise ValueError(f"Expected images of one size (HxW), or a resolution to resize them to, got sizes {found}.")
    return 1 if gray else 3


def _opaque(image: Image.Image, name: str) -> Image.Image:
    """``image`` without its alpha channel, which must be fully opaque."""
    if "transparency" in image.info:  # a transparent palette entry or colour key (PNG tRNS) -> an alpha channel
        image = image.convert("LA" if image.mode in ("1", "L") else "RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        if image.getchannel("A").getextrema() != (255, 255):
            raise ValueError(f"Expected opaque images, got transparent pixels in {name}; flatten it first.")
        image = image.convert("L" if image.mode == "LA" else "RGB")
    return image


def fit_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Center-crop ``image`` to the aspect ratio of ``size = (H, W)`` and resize it to ``size`` (bilinear)."""
    height, width = size
    if image.size == (width, height):
        return image
    scale = min(image.width / width, image.height / height)  # the largest centred box of the target's aspect
    box_w, box_h = width * scale, height * scale
    left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
    return image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h))


def decode_images(
    sources: Sequence[ImageSource], channels: int, resolution: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode images into one 8-bit array, converting each to ``channels`` and resizing it to ``resolution``.

    ``channels`` comes from :func:`inspect_images` over the whole source (both splits), so that every split agrees.

    Shapes:
        ``len(sources)`` images -> ``(N, C, H, W)`` uint8
    """
    if channels not in (1, 3):
        raise ValueError(f"Expected channels to be 1 or 3, got {channels!r}.")
    arrays = []
    for index, source in enumerate(sources):
        with open_image(source) as image:
            image = _opaque(image, _name(source, index)).convert("L" if channels == 1 else "RGB")
            if resolution is not None:
                image = fit_image(image, resolution)
            arrays.append(np.asarray(image, dtype=np.uint8).reshape(image.height, image.width, channels))
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:  # inspect_images lets this through only with a resolution, which makes the sizes equal
        raise ValueError(f"Expected images of one size, got shapes {sorted(sizes)}.")
    return np.stack(arrays).transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def resize_array(x: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    """Resize 8-bit images given as an array with :func:`fit_image` (1 or 3 channels).

    Shapes:
        x: ``(N, C, H, W)`` uint8 -> ``(N, C, *resolution)`` uint8
    """
    if x.ndim != 4 or x.dtype != np.uint8 or x.shape[1] not in (1, 3):
        raise ValueError(f"Expected a uint8 array of shape (N, 1 or 3, H, W), got {x.dtype} of shape {x.shape}.")
    if x.shape[2:] == tuple(resolution):
        return x
    mode = "L" if x.shape[1] == 1 else "RGB"
    out = np.empty((len(x), x.shape[1], *resolution), dtype=np.uint8)
    for i, image in enumerate(x.transpose(0, 2, 3, 1)):  # (H, W, C) each
        fitted = fit_image(Image.fromarray(image[..., 0] if mode == "L" else image, mode), resolution)
        out[i] = np.asarray(fitted).reshape(*resolution, x.shape[1]).transpose(2, 0, 1)
    return out
