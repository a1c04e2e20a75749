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

Bad files: every failure of a file — missing, unreadable, not a regular file, empty, truncated, not an image (text
saved as ``.png``), corrupt, or a decompression bomb (more pixels than PIL's ``Image.MAX_IMAGE_PIXELS``, 89.5 million
by default: PIL only warns up to twice that) — is a ``ValueError`` that names the file (its path, or the name the
source gives an image held as bytes, e.g. a Hugging Face dataset's row).

Resizing (``resolution``, an int for a square or ``(H, W)``): the largest centred box with the target's aspect ratio
is cropped and resized to the target with PIL's (antialiased) bilinear filter, as diffusers' training scripts do
(``Resize`` + ``CenterCrop``). Images already of the target size are left untouched.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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


def _check_file(source: ImageSource, name: str) -> None:
    """A path must be a regular, non-empty file (opening a FIFO named ``x.png`` would block for ever); bytes must be
    non-empty."""
    if isinstance(source, bytes):
        if not source:
            raise ValueError(f"Expected an image file, got {name}, which is empty (0 bytes).")
        return
    try:
        info = os.stat(source)  # follows links: a broken one fails here
    except OSError as error:
        raise ValueError(f"Expected a readable image file, got {name}: {error.strerror or error}.") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"Expected an image file, got {name}, which is not a regular file.")
    if info.st_size == 0:
        raise ValueError(f"Expected an image file, got {name}, which is empty (0 bytes).")


# What PIL raises for a file it cannot read (its decoders raise more than OSError: SyntaxError for a broken PNG,
# ValueError for an oversized text chunk, struct.error or EOFError for short headers).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)


@contextmanager
def _pil_errors(name: str) -> Iterator[None]:
    """Make every failure of PIL on one file a ValueError naming it; a decompression bomb is refused, not warned of."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"Expected images of at most PIL's Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels (a guard "
            f"against decompression bombs; raise it to read larger images), got {name}: {error}"
        ) from None
    except _PIL_ERRORS as error:
        raise ValueError(
            f"Expected an image file PIL can decode, got {name}, which is not one (corrupt, truncated or another "
            f"format): {type(error).__name__}: {error}"
        ) from None


def open_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Open an image lazily (PIL reads the header now, the pixels when asked), checked: any failure of the file is a
    ``ValueError`` naming it (``name``, by default its path or ``"image"``)."""
    name = name if name is not None else _name(source, None)
    _check_file(source, name)
    with _pil_errors(name):
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def _decoded(image: Image.Image, name: str) -> Image.Image:
    """``image`` with its pixels read (where a truncated or corrupt file fails)."""
    with _pil_errors(name):
        image.load()
    return image


def _name(source: ImageSource, index: int | None, names: Sequence[str] | None = None) -> str:
    if names is not None:
        return names[index]
    if isinstance(source, bytes):
        return "image" if index is None else f"image {index}"
    return repr(os.fspath(source))


def _check_names(sources: Sequence[ImageSource], names: Sequence[str] | None) -> None:
    if names is not None and len(names) != len(sources):
        raise ValueError(f"Expected one name per image ({len(sources)}), got {len(names)} names.")


def inspect_images(
    sources: Sequence[ImageSource], resolution: tuple[int, int] | None, names: Sequence[str] | None = None
) -> int:
    """Read the headers of every image of a source; return its channels (1 or 3) and check that it is usable.

    Args:
        sources: the images, as paths or encoded bytes.
        resolution: ``(H, W)`` they will be resized to, or ``None`` (then all must share one size).
        names: how errors name each image (default: its path, or ``"image INDEX"`` for bytes).

    Raises:
        ValueError: if there is no image, a file cannot be read as an image (named), an image has a mode that is not
            8-bit or transparent pixels, or the images have several sizes and no ``resolution`` is given (the message
            names the sizes found).
    """
    if not sources:
        raise ValueError("Expected at least one image, got none.")
    _check_names(sources, names)
    sizes: Counter = Counter()
    gray = True
    for index, source in enumerate(sources):
        name = _name(source, index, names)
        with open_image(source, name) as image:
            if image.mode not in GRAY_MODES + COLOR_MODES:
                raise ValueError(
                    f"Expected 8-bit images (PIL modes {', '.join(GRAY_MODES + COLOR_MODES)}), "
                    f"got mode {image.mode!r} in {name}."
                )
            gray = gray and image.mode in GRAY_MODES
            sizes[image.size] += 1
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                _opaque(_decoded(image, name), name)  # decodes the image: only those with alpha
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
    sources: Sequence[ImageSource],
    channels: int,
    resolution: tuple[int, int] | None = None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Decode images into one 8-bit array, converting each to ``channels`` and resizing it to ``resolution``.

    ``channels`` comes from :func:`inspect_images` over the whole source (both splits), so that every split agrees;
    ``names`` as there. A file that fails to decode (truncated, corrupt) is a ``ValueError`` naming it.

    Shapes:
        ``len(sources)`` images -> ``(N, C, H, W)`` uint8
    """
    if channels not in (1, 3):
        raise ValueError(f"Expected channels to be 1 or 3, got {channels!r}.")
    _check_names(sources, names)
    arrays = []
    for index, source in enumerate(sources):
        name = _name(source, index, names)
        with open_image(source, name) as image:
            image = _opaque(_decoded(image, name), name).convert("L" if channels == 1 else "RGB")
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
