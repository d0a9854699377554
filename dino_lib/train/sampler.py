"""A distributed sampler that can start an epoch from any batch (exact mid-epoch resume).

The epoch's order is ``randperm(n)`` from a generator seeded with ``seed + epoch`` (same on every rank, like
``DistributedSampler``); rank ``r`` takes every ``world``-th index starting at ``r``; the tail that does not fill a
whole per-rank batch is dropped (``drop_last``). :meth:`set_epoch` with ``start_batch`` skips the batches already
trained before an interruption.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableDistributedSampler"]


class ResumableDistributedSampler(Sampler[int]):
    """Args: n (dataset size), num_replicas, rank, batch_size (per rank), seed, shuffle."""

    def __init__(self, n: int, num_replicas: int, rank: int, batch_size: int, seed: int = 0, shuffle: bool = True):
        self.n, self.num_replicas, self.rank = n, num_replicas, rank
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch, self.start_batch = 0, 0
        self.batches_per_epoch = (n // num_replicas) // batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_indices(self) -> list[int]:
        """This rank's indices for the whole current epoch (before skipping)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = self.batches_per_epoch * self.batch_size
        return order[self.rank : per_rank * self.num_replicas : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
