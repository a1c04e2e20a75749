"""The order of the training data: shuffled epochs, cut into global batches shared between processes.

Position ``k`` of a run (its ``k``-th micro-batch) is a pure function of ``(seed, k)``: epoch ``e`` is the
permutation ``torch.randperm(N)`` drawn from a generator seeded with ``seed + e``; it is cut into global batches of
``batch_size * num_processes`` images (the incomplete last one is dropped) and process ``r`` takes the ``r``-th
slice of each. So the processes train on disjoint shards of every global batch, and a run resumed at micro-batch
``k`` reads exactly the batches an uninterrupted run would have read.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShardedBatchSampler(Sampler[list[int]]):
    """An endless stream of this process's batches of dataset indices, starting at global batch ``start``.

    Args:
        num_items: the dataset's length ``N``.
        batch_size: indices per batch of this process.
        num_processes: processes sharing each global batch.
        rank: this process, in ``[0, num_processes)``.
        seed: seeds the permutation of each epoch.
        start: the first global batch (micro-batches already consumed by a resumed run).

    Example:
        >>> sampler = ShardedBatchSampler(10, batch_size=2, num_processes=2, rank=1)
        >>> batches = iter(sampler)
        >>> len(next(batches))
        2
    """

    def __init__(
        self, num_items: int, batch_size: int, num_processes: int = 1, rank: int = 0, seed: int = 0, start: int = 0
    ) -> None:
        if not 0 <= rank < num_processes:
            raise ValueError(f"Expected rank in [0, {num_processes}), got {rank!r}.")
        if num_items < batch_size * num_processes:
            raise ValueError(
                f"Expected at least batch_size x processes = {batch_size} x {num_processes} training images, got "
                f"{num_items}."
            )
        if start < 0:
            raise ValueError(f"Expected start >= 0, got {start!r}.")
        self.num_items, self.batch_size, self.num_processes, self.rank = num_items, batch_size, num_processes, rank
        self.seed, self.start = seed, start

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // (self.batch_size * self.num_processes)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of the whole dataset in ``epoch``: ``(N,)`` long."""
        return torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.num_processes
        epoch, order = None, None
        k = self.start
        while True:
            e, i = divmod(k, self.batches_per_epoch)
            if e != epoch:
                epoch, order = e, self.permutation(e)
            begin = i * global_batch + self.rank * self.batch_size
            yield order[begin : begin + self.batch_size].tolist()
            k += 1
