"""The one home of float <-> bin conversions.

Bins are integers in ``[0, num_values)``. Two conversions exist, each in exactly one place:

* :func:`bins_to_input`: bins -> the network's input, centred floats in ``[-1, 1]`` (bin ``k`` maps to
  ``2 k / (num_values - 1) - 1``, so the first and last bins sit exactly on the interval's ends), and its
  inverse :func:`input_to_bins` for continuous draws on that scale (nearest bin, edge bins take the tails);
* :func:`images_to_bins` / :func:`bins_to_images`: float images in ``[0, 1]`` <-> bins, by *rounding*
  (``round(v * (num_values - 1))``), never truncation: truncating would put most levels in the wrong bin.

:func:`binarize` thresholds images for binary models (``num_values = 2``).
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
