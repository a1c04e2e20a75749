"""The step protocol of cached sampling: which positions are final, and the buffers the cached steps read.

Cached sampling visits the positions of an ``H x W`` grid in raster order, ``S`` channel steps at each (the
likelihood's ``channel_steps``). A model's incremental network keeps its state in a typed cache (a dataclass derived
from :class:`StepCache`) and is told, by the one :class:`RasterCursor` every cache holds, what has become final:

* ``commit(cache, pixel, i, j)``: position ``(i, j)`` is final, with these (encoded) values;
* ``commit_row(cache, i)``: row ``i`` is final (every one of its positions was committed);

so that no model works out from ``(i, j)`` which positions it may read. Steps that read only final positions
cannot let the parameters of what is being drawn depend on anything not yet drawn (the property lossless coding
needs: its encoder and decoder see the same parameters).

Positions are python ints in eager sampling and 0-d long tensors in the compiled step (one graph for every
position: no value is baked into it). :func:`span` and :class:`PaddedMap` give the two the same code: a map is
stored inside a zero margin wide enough for every window its readers take, so that no read leaves the buffer and no
step branches on the border; an int position reads a slice (a view), a tensor position gathers the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

# A position or a coordinate: a python int (eager steps) or a 0-d long tensor (compiled steps).
Index = int | torch.Tensor


def span(start: Index, length: int) -> slice | torch.Tensor:
    """The indices ``start .. start + length - 1``: a slice for an int, an index tensor for a tensor.

    Shapes:
        start: ``()`` long -> ``(length,)`` long
    """
    if isinstance(start, int):
        return slice(start, start + length)
    return start + torch.arange(length, device=start.device)


def as_index(index: Index) -> int | torch.Tensor:
    """``index`` for (advanced) indexing: an int as it is, a 0-d tensor as a 1-element one (a 0-d tensor index is read
    back as a Python int: a host synchronization, and a break in a torch.compile graph).

    Shapes:
        index: ``()`` long -> ``(1,)`` long
    """
    return index if isinstance(index, int) else index.view(1)


def pick(t: torch.Tensor, dim: int, index: Index) -> torch.Tensor:
    """``t`` at ``index`` along ``dim`` (the dimension removed), for an int or a 0-d tensor index.

    Shapes:
        t: ``(..., n, ...)`` -> ``(..., ...)``
    """
    if isinstance(index, int):
        return t.select(dim, index)
    return t.index_select(dim, index.view(1)).squeeze(dim)


def put(t: torch.Tensor, dim: int, index: Index, value: torch.Tensor) -> None:
    """Write ``value`` into ``t`` at ``index`` along ``dim`` (an int or a 0-d tensor index; in place).

    Shapes:
        t: ``(..., n, ...)``, value: ``(..., ...)``
    """
    if isinstance(index, int):
        t.select(dim, index).copy_(value)
    else:
        t[(slice(None),) * dim + (index.view(1),)] = value.unsqueeze(dim)


class Margin(NamedTuple):
    """Zero rows above and below a map and zero columns left and right of it.

    Causal windows never read below their row: ``bottom`` is 0 but for full kernels read a row at a time.
    """

    top: int = 0
    left: int = 0
    right: int = 0
    bottom: int = 0

    def union(self, *others: Margin) -> Margin:
        """The smallest margin that holds this one and ``others``."""
        return Margin(*(max(sizes) for sizes in zip(self, *others, strict=True)))


@dataclass
class PaddedMap:
    """A ``(B, C, H, W)`` map inside a zero margin: what a cached layer writes and its windows read.

    Coordinates are those of the map (row ``-1`` is the first margin row); the margin is never written.

    Attributes:
        data: ``(B, C, top + H + bottom, left + W + right)``.
        margin: the zero border.
        size: ``(H, W)``.
    """

    data: torch.Tensor
    margin: Margin
    size: tuple[int, int]

    @classmethod
    def zeros(
        cls, batch_size: int, channels: int, size: tuple[int, int], margin: Margin, like: torch.Tensor
    ) -> PaddedMap:
        """A zero map on ``like``'s device and dtype."""
        (H, W), (top, left, right, bottom) = size, margin
        return cls(like.new_zeros(batch_size, channels, top + H + bottom, left + W + right), margin, tuple(size))

    def fill_(self, value: float) -> PaddedMap:
        """Set the whole map (not the margin) to ``value``."""
        self.interior.fill_(value)
        return self

    @property
    def interior(self) -> torch.Tensor:
        """The map without its margin (a view).

        Shapes:
            -> ``(B, C, H, W)``
        """
        (top, left, _, _), (H, W) = self.margin, self.size
        return self.data[:, :, top : top + H, left : left + W]

    def write(self, value: torch.Tensor, i: Index, j: Index, channels: slice = slice(None)) -> None:
        """Write the values of position ``(i, j)`` (of ``channels``).

        Shapes:
            value: ``(B, C)``
        """
        r, c = self.margin.top + i, self.margin.left + j
        if isinstance(r, int) and isinstance(c, int):
            self.data[:, channels, r, c] = value
        else:  # one flat index into the (contiguous) map, as window reads
            self.data.flatten(2)[:, channels, as_index(r * self.data.shape[-1] + c)] = value.unsqueeze(-1)

    def write_row(self, value: torch.Tensor, i: Index) -> None:
        """Write row ``i``.

        Shapes:
            value: ``(B, C, W)``
        """
        left, r = self.margin.left, as_index(self.margin.top + i)
        self.data[:, :, r, left : left + self.size[1]] = value if isinstance(r, int) else value.unsqueeze(2)

    def at(self, i: Index, j: Index) -> torch.Tensor:
        """The values at ``(i, j)`` (zero in the margin).

        Shapes:
            -> ``(B, C)``
        """
        return pick(pick(self.data, 2, self.margin.top + i), 2, self.margin.left + j)

    def row(self, i: Index) -> torch.Tensor:
        """Row ``i`` without the left and right margins (zero for a margin row).

        Shapes:
            -> ``(B, C, W)``
        """
        left = self.margin.left
        return pick(self.data, 2, self.margin.top + i)[..., left : left + self.size[1]]

    def window(self, top: Index, left: Index, height: int, width: int) -> torch.Tensor:
        """The ``height x width`` window whose top-left position is ``(top, left)`` (inside the margin).

        Shapes:
            -> ``(B, C, height, width)``
        """
        rows, cols = span(self.margin.top + top, height), span(self.margin.left + left, width)
        if isinstance(rows, torch.Tensor) and isinstance(cols, torch.Tensor):
            # One flat index into the (contiguous) map: a single indirect read per value in a compiled kernel.
            flat = (rows[:, None] * self.data.shape[-1] + cols[None, :]).flatten()  # (height width,)
            return self.data.flatten(2).index_select(2, flat).view(*self.data.shape[:2], height, width)
        return self.data[:, :, rows, cols]

    def rows(self, top: Index, height: int) -> torch.Tensor:
        """Rows ``top .. top + height - 1`` with the left and right margins (for row convolutions).

        Shapes:
            -> ``(B, C, height, left + W + right)``
        """
        rows = span(self.margin.top + top, height)
        return self.data[:, :, rows]


class Visit(NamedTuple):
    """What a step at a position means, as :meth:`RasterCursor.advance` works it out.

    Attributes:
        step: the channel step at the position (``0 .. S - 1``).
        final: the position that has just become final (the previous one), or ``None``.
        row_done: the row that has just become final (the previous one, at the first step of a row), or ``None``.
    """

    step: int
    final: tuple[int, int] | None
    row_done: int | None


@dataclass
class RasterCursor:
    """Where cached sampling stands in raster order: the one place that knows which positions are final.

    Args:
        width: ``W``, positions per row.
        num_steps: ``S``, channel steps per position.
    """

    width: int
    num_steps: int
    position: int = -1  # raster index of the current position (-1: none yet)
    substep: int = -1  # the channel step at it

    def advance(self, i: int, j: int) -> Visit:
        """Move to the next step, at ``(i, j)``; raise a ``ValueError`` unless it is the next one in raster order."""
        p = i * self.width + j
        if p == self.position and self.substep + 1 < self.num_steps:
            self.substep += 1
            return Visit(self.substep, None, None)
        if p == self.position + 1 and 0 <= j < self.width and self.substep in (-1, self.num_steps - 1):
            previous, self.position, self.substep = self.position, p, 0
            final = divmod(previous, self.width) if previous >= 0 else None
            return Visit(0, final, i - 1 if j == 0 and i > 0 else None)
        where = "the start" if self.position < 0 else f"step {self.substep} of {divmod(self.position, self.width)}"
        raise ValueError(
            f"Expected the steps in raster order (rows in order, left to right, {self.num_steps} channel step(s) per "
            f"position), got ({i}, {j}) after {where}."
        )


@dataclass(kw_only=True)
class StepCache:
    """Base of every model's cached-sampling state.

    A model's cache derives from it with its layers' state (buffers, frozen weights, conditioning), all allocated at
    ``init_cache`` with the static shapes of the grid. The :class:`RasterCursor` is set by the driver of the protocol
    (:meth:`pixelprior.models.AutoregressivePrior.step`) at the first step.
    """

    cursor: RasterCursor | None = None
