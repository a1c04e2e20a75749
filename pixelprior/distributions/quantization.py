"""The one home of float <-> bin conversions.

Bins are integers in ``[0, num_values)``. Two conversions exist, each in exactly one place:

* :func:`bins_to_input`: bins -> the network's input, centred floats in ``[-1, 1]`` (bin ``k`` maps to
  ``2 k / (num_values - 1) - 1``, so the first and last bins sit exactly on the interval's ends), and its
  inverse :func:`input_to_bins` for continuous draws on that scale (nearest bin, edge bins take the tails);
* :func:`images_to_bins` / :func:`bins_to_images`: float images in ``[0, 1]`` <-> bins, by *rounding*
  (``round(v * (num_values - 1))``), never truncation: truncating would put most levels in the wrong bin.

:func:`binarize` thresholds images for binary models (``num_values = 2``); :func:`reduce_bit_depth` maps 8-bit bins
to ``n``-bit bins (``num_values = 2**n``) by ``floor(x / 2**(8 - n))``, the reduction of Glow and PixelCNN++'s
5-bit experiments. It is not a float truncation: each ``n``-bit bin collects exactly ``2**(8 - n)`` consecutive 8-bit
levels, an equal share, whereas rounding would give the two edge bins half a share each.
"""

from __future__ import annotations

import torch


def _check_num_values(num_values: int) -> None:
    if not isinstance(num_values, int) or num_values < 2:
        raise ValueError(f"Expected num_values to be an int >= 2, got {num_values!r}.")


def _check_images(images: torch.Tensor) -> None:
    """Float images with every value in ``[0, 1]`` (NaN is out of range)."""
    if not torch.is_floating_point(images):
        raise ValueError(f"Expected a floating-point image tensor in [0, 1], got dtype {images.dtype}.")
    if images.numel() and not bool(((images >= 0) & (images <= 1)).all()):
        finite = images[torch.isfinite(images)]
        seen = f"[{finite.min().item()}, {finite.max().item()}]" if finite.numel() else "no finite values"
        nan = " and NaN" if torch.isnan(images).any() else ""
        raise ValueError(f"Expected image values in [0, 1], got values in {seen}{nan}.")


def bins_to_input(x: torch.Tensor, num_values: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Map integer bins to the centred network input ``2 x / (num_values - 1) - 1`` in ``[-1, 1]``.

    Shapes:
        x: ``(...)`` integer -> ``(...)`` float of ``dtype``
    """
    _check_num_values(num_values)
    return x.to(dtype) * (2.0 / (num_values - 1)) - 1.0


def input_to_bins(v: torch.Tensor, num_values: int) -> torch.Tensor:
    """Inverse of :func:`bins_to_input` for continuous draws: the nearest bin, saturating at the ends.

    Used by likelihoods whose samples are continuous on the input scale (the logistic mixture): values
    below -1 or above 1 belong to the edge bins, which carry the tails.

    Shapes:
        v: ``(...)`` float -> ``(...)`` long
    """
    _check_num_values(num_values)
    return torch.round((v.clamp(-1.0, 1.0) + 1.0) * ((num_values - 1) / 2.0)).long()


def bins_to_images(x: torch.Tensor, num_values: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Map integer bins to float images in ``[0, 1]`` (bin ``k`` -> ``k / (num_values - 1)``).

    Shapes:
        x: ``(...)`` integer -> ``(...)`` float
    """
    _check_num_values(num_values)
    return x.to(dtype) / (num_values - 1)


def images_to_bins(images: torch.Tensor, num_values: int) -> torch.Tensor:
    """Quantize float images in ``[0, 1]`` to bins by rounding to the nearest level.

    Raises:
        ValueError: if the images are not floating point or fall outside ``[0, 1]`` (NaN included).

    Shapes:
        images: ``(...)`` float -> ``(...)`` long
    """
    _check_num_values(num_values)
    _check_images(images)
    return torch.round(images * (num_values - 1)).long()


def binarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary bins (``num_values = 2``) of float images in ``[0, 1]``: 1 where the value is ``>= threshold``.

    Shapes:
        images: ``(...)`` float -> ``(...)`` long
    """
    _check_images(images)
    return (images >= threshold).long()


def reduce_bit_depth(x: torch.Tensor, num_bits: int, from_bits: int = 8) -> torch.Tensor:
    """Requantize ``from_bits``-bit bins to ``num_bits``-bit bins: ``floor(x / 2**(from_bits - num_bits))``.

    Every ``num_bits``-bit bin holds ``2**(from_bits - num_bits)`` consecutive input levels (the reduction of Glow
    and PixelCNN++); ``num_bits = 1`` equals :func:`binarize` of the images at 0.5. The dtype is kept (uint8 stays
    uint8).

    Raises:
        ValueError: if ``x`` is not an integer tensor with values in ``[0, 2**from_bits)``, or ``num_bits`` is not an
            int in ``[1, from_bits]``.

    Shapes:
        x: ``(...)`` integer -> ``(...)`` same dtype, values in ``[0, 2**num_bits)``

    Example:
        >>> reduce_bit_depth(torch.tensor([0, 7, 8, 255]), num_bits=5)
        tensor([ 0,  0,  1, 31])
    """
    if not isinstance(from_bits, int) or isinstance(from_bits, bool) or from_bits < 1:
        raise ValueError(f"Expected from_bits to be a positive int, got {from_bits!r}.")
    if not isinstance(num_bits, int) or isinstance(num_bits, bool) or not 1 <= num_bits <= from_bits:
        raise ValueError(f"Expected num_bits to be an int in [1, {from_bits}], got {num_bits!r}.")
    if torch.is_floating_point(x) or x.dtype == torch.bool:
        raise ValueError(f"Expected an integer tensor of {from_bits}-bit bins, got dtype {x.dtype}.")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= 2**from_bits):
        got = f"[{int(x.min())}, {int(x.max())}]"
        raise ValueError(f"Expected {from_bits}-bit bins in [0, {2**from_bits}), got values in {got}.")
    return torch.div(x, 2 ** (from_bits - num_bits), rounding_mode="floor")
