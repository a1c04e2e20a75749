"""A colour palette: k-means clusters of RGB, so that an RGB image becomes one value per pixel (Image GPT [1]).

[1] M. Chen, A. Radford, R. Child, J. Wu, H. Jun, D. Luan, I. Sutskever. Generative Pretraining from Pixels.
    ICML 2020. https://cdn.openai.com/papers/Generative_Pretraining_from_Pixels_V2.pdf (section 3.1: "we create
    our own 9-bit color palette by clustering (R, G, B) pixel values using k-means with k = 512")

A data transform around a prior with ``in_channels=1, num_values=num_colors``:
``ids = palette.encode(images)`` (the nearest centre of each pixel) before training, ``palette.decode(ids)``
after sampling. Centres live on the image scale ``[0, 1]`` (:func:`pixelprior.distributions.bins_to_images`);
:meth:`ColorPalette.decode` rounds them to bins with :func:`pixelprior.distributions.images_to_bins`.

Einops letters: ``b`` batch, ``h w`` grid, ``n`` pixels, ``k`` colours.
"""

from __future__ import annotations

import os

import torch
from einops import rearrange
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..distributions import bins_to_images, images_to_bins

PRETRAINED_FILE = "palette.safetensors"  # the file of a palette folder (a pipeline component)
_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_bins(x: torch.Tensor, num_values: int, name: str, channels: int | None) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in _INTEGER_DTYPES:
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"Expected {name} to be an integer tensor, got {got}.")
    if channels is not None and (x.ndim != 4 or x.shape[1] != channels):
        raise ValueError(f"Expected {name} of shape (B, {channels}, H, W), got {tuple(x.shape)}.")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_values):
        raise ValueError(f"Expected {name} values in [0, {num_values}), got [{int(x.min())}, {int(x.max())}].")


def _nearest(points: torch.Tensor, centers: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index of the nearest centre of each point (squared Euclidean distance; ties to the lowest index).

    Shapes:
        points: ``(n, 3)``, centers: ``(k, 3)`` -> ``(n,)`` long
    """
    out = [torch.cdist(p, centers).argmin(1) for p in points.split(chunk)] if len(points) else []
    return torch.cat(out) if out else points.new_zeros(0, dtype=torch.long)


def _kmeans_plus_plus(points: torch.Tensor, num_colors: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre is a point drawn with probability proportional to its squared distance to
    the nearest centre so far (distinct points, so a drawn point is never a centre already).

    Shapes:
        points: ``(n, 3)`` distinct -> ``(k, 3)``
    """
    first = int(torch.randint(len(points), (1,), generator=generator))
    chosen = [first]
    dist = (points - points[first]).pow(2).sum(1)  # (n,) squared distance to the nearest chosen centre
    for _ in range(num_colors - 1):
        index = int(torch.multinomial(dist, 1, generator=generator))
        chosen.append(index)
        dist = torch.minimum(dist, (points - points[index]).pow(2).sum(1))
    return points[chosen].clone()


class ColorPalette:
    """``num_colors`` RGB centres on the image scale ``[0, 1]``; maps RGB bins to colour ids and back.

    Args:
        centers: ``(num_colors, 3)`` float in ``[0, 1]``.
        num_values: levels per RGB channel of the images it encodes (256 for 8-bit).
    """

    def __init__(self, centers: torch.Tensor, num_values: int = 256) -> None:
        if not torch.is_floating_point(centers) or centers.ndim != 2 or centers.shape[1] != 3 or len(centers) < 1:
            raise ValueError(f"Expected centers of shape (num_colors, 3), float, got {tuple(centers.shape)}.")
        if not bool(((centers >= 0) & (centers <= 1)).all()):
            raise ValueError("Expected centers on the image scale [0, 1].")
        self.centers = centers.float()
        self.num_values = num_values

    @property
    def num_colors(self) -> int:
        return len(self.centers)

    @classmethod
    def fit(
        cls,
        images: torch.Tensor,
        num_colors: int = 512,
        num_values: int = 256,
        num_iters: int = 20,
        max_pixels: int = 1_000_000,
        seed: int = 0,
    ) -> ColorPalette:
        """k-means (Lloyd's algorithm) over the pixels of ``images``, seeded: equal seeds give equal palettes.

        At most ``max_pixels`` pixels, drawn at random, are clustered; the initial centres are drawn among the
        distinct colours by k-means++; a cluster that loses every pixel keeps its centre.

        Shapes:
            images: ``(B, 3, H, W)`` integer bins in ``[0, num_values)``
        """
        _check_bins(images, num_values, "images", 3)
        points = bins_to_images(rearrange(images, "b c h w -> (b h w) c"), num_values)  # (n, 3) in [0, 1]
        gen = torch.Generator().manual_seed(seed)
        if len(points) > max_pixels:
            points = points[torch.randperm(len(points), generator=gen)[:max_pixels]]
        distinct = torch.unique(points, dim=0)
        if len(distinct) < num_colors:
            raise ValueError(f"Expected at least num_colors={num_colors} distinct colours, got {len(distinct)}.")
        centers = _kmeans_plus_plus(distinct, num_colors, gen)  # (k, 3)
        for _ in range(num_iters):
            assign = _nearest(points, centers)  # (n,)
            sums = torch.zeros_like(centers).index_add_(0, assign, points)
            counts = torch.bincount(assign, minlength=num_colors)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
            if torch.equal(new, centers):
                break
            centers = new
        return cls(centers.clamp(0.0, 1.0), num_values)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The id of the nearest colour of each pixel.

        Shapes:
            images: ``(B, 3, H, W)`` integer bins -> ``(B, 1, H, W)`` long in ``[0, num_colors)``
        """
        _check_bins(images, self.num_values, "images", 3)
        B, _, H, W = images.shape
        points = bins_to_images(rearrange(images, "b c h w -> (b h w) c"), self.num_values)  # (n, 3)
        ids = _nearest(points, self.centers.to(points.device))
        return rearrange(ids, "(b h w) -> b 1 h w", b=B, h=H, w=W)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """The colour of each id, rounded to the nearest bins.

        Shapes:
            ids: ``(B, 1, H, W)`` or ``(B, H, W)`` integer -> ``(B, 3, H, W)`` long bins
        """
        if isinstance(ids, torch.Tensor) and ids.ndim == 3:
            ids = ids.unsqueeze(1)
        _check_bins(ids, self.num_colors, "ids", 1)
        colors = images_to_bins(self.centers.to(ids.device), self.num_values)  # (k, 3)
        return rearrange(colors[ids[:, 0].long()], "b h w c -> b c h w")

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the palette into a folder as ``palette.safetensors``: the ``palette`` component of a
        :class:`~pixelprior.PixelPriorPipeline` folder, which ``DiffusionPipeline.save_pretrained`` calls."""
        os.makedirs(save_directory, exist_ok=True)
        self.save(os.path.join(save_directory, PRETRAINED_FILE))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> ColorPalette:
        """Read a palette written by :meth:`save_pretrained` (safetensors; nothing is unpickled)."""
        path = os.path.join(folder, PRETRAINED_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"Expected a palette folder holding {PRETRAINED_FILE}, got {os.fspath(folder)!r}.")
        try:
            return cls.load(path)
        except SafetensorError as error:
            raise ValueError(f"Expected a safetensors palette file, got {path!r}: {error}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the centres and ``num_values`` to a safetensors file."""
        save_file({"centers": self.centers.contiguous()}, str(path), metadata={"num_values": str(self.num_values)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> ColorPalette:
        """Read a palette written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata, keys = f.metadata() or {}, set(f.keys())
        if keys != {"centers"} or not str(metadata.get("num_values", "")).isdigit():
            raise ValueError(
                f"Expected a palette file with one tensor 'centers' and metadata num_values, got tensors "
                f"{sorted(keys)} and metadata {metadata} in {os.fspath(path)!r}."
            )
        return cls(load_file(str(path))["centers"], int(metadata["num_values"]))
