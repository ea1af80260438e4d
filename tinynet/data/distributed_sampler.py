"""Shard the loader's deterministic per-epoch order across the ranks of a data-parallel run.

Every rank computes the *same* order of epoch ``e`` (``DataLoader.indices``: a permutation
drawn from the seed and the epoch alone) and keeps every N-th element starting at its rank,
after the order was made divisible by N exactly as PyTorch's ``DistributedSampler`` does:

* ``drop_last=False``: the order is padded with its own first elements up to a multiple of N,
  so every rank gets ``ceil(n / N)`` samples (a few samples are seen twice per epoch);
* ``drop_last=True``: the tail is cut to a multiple of N, ``floor(n / N)`` samples per rank
  (a few samples are not seen in that epoch; which ones changes with the order).

Why striding instead of contiguous blocks: the k-th batch of size b on rank r then holds
positions ``k*N*b + r + N*j`` (j < b) of the padded order, and over all ranks these are
exactly positions ``k*N*b .. (k+1)*N*b - 1`` -- the k-th batch of one process with batch N*b.
So N ranks with batch b see the batches of one process with batch N*b, and a run may resume
with another number of ranks at the same batch position as long as the global batch is kept.

For evaluation, ``even=False`` shards without padding or dropping (rank r gets positions
r, r+N, ...; shard sizes differ by at most one), so each sample is counted exactly once when
the ranks add up their correct/total counts.
"""
from __future__ import annotations

import math

import numpy as np

from .loader import DataLoader, _order

__all__ = ["DistributedSampler", "DistributedDataLoader"]


def _resolve_replicas(num_replicas, rank):
    if num_replicas is None or rank is None:
        from .. import distributed
        group = distributed.get_group()
        num_replicas = group.world_size if num_replicas is None else num_replicas
        rank = group.rank if rank is None else rank
    num_replicas, rank = int(num_replicas), int(rank)
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in 0..{num_replicas - 1} for num_replicas={num_replicas}, got {rank}")
    return num_replicas, rank


class DistributedSampler:
    """The dataset indices of rank ``rank`` of ``num_replicas`` for each epoch.

    ``dataset`` is a dataset or its length.  ``num_replicas``/``rank`` default to the group
    of ``tinynet.distributed``.  ``seed`` must be the same on every rank (it is the loader's
    seed); ``shuffle``, ``drop_last`` as in PyTorch; ``even=False`` for evaluation (see the
    module docstring).
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False,
                 even=True):
        self.dataset_length = int(dataset if isinstance(dataset, (int, np.integer)) else len(dataset))
        if self.dataset_length < 0:
            raise ValueError(f"dataset length must be >= 0, got {self.dataset_length}")
        self.num_replicas, self.rank = _resolve_replicas(num_replicas, rank)
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.even = bool(even)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Samples per rank per epoch (the same on every rank unless ``even=False``)."""
        n, replicas = self.dataset_length, self.num_replicas
        if not self.even:
            return len(range(self.rank, n, replicas))
        if self.drop_last:
            return n // replicas
        return math.ceil(n / replicas)

    @property
    def total_size(self) -> int:
        """Samples per epoch over all ranks, padding included."""
        if not self.even:
            return self.dataset_length
        return self.num_samples * self.num_replicas

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def global_order(self, epoch=None):
        """The order of ``epoch`` over all ranks after padding or cutting, before sharding."""
        order = _order(self.seed, self.epoch if epoch is None else epoch, self.dataset_length, self.shuffle)
        if not self.even:
            return order
        total = self.total_size
        if total <= len(order):
            return order[:total]
        repeats = math.ceil(total / len(order))   # more ranks than samples: repeat the order
        return np.tile(order, repeats)[:total]

    def indices(self, epoch=None):
        """This rank's dataset indices of ``epoch`` (default: the sampler's current epoch)."""
        return self.global_order(epoch)[self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __repr__(self):
        return (f"DistributedSampler(n={self.dataset_length}, rank={self.rank}/{self.num_replicas}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, even={self.even}, seed={self.seed})")


class DistributedDataLoader(DataLoader):
    """A :class:`DataLoader` over this rank's shard of each epoch.

    Same arguments as ``DataLoader`` plus ``num_replicas``, ``rank`` and ``even`` (see
    :class:`DistributedSampler`); ``batch_size`` is the batch *per rank*.  ``drop_last`` here
    applies both to the sharding (cut the order to a multiple of the rank count) and to the
    last short batch, as with PyTorch's sampler and loader given the same flag.  ``seed`` is
    required when there is more than one rank: every rank must draw the same order.
    Augmentation of sample ``i`` uses the same generator as in one process (it is keyed by
    the seed, the epoch and ``i``), whichever rank transforms it.  ``state_dict()`` counts
    batches per rank, which is also the position in global batches, so a run resumed with a
    different number of ranks and the same global batch continues at the same samples.

    Dropout is not keyed by sample: each rank draws its masks for its own ``batch_size``
    samples from its own :func:`tinynet.backend.generator`, so rank r's masks are not the
    rows r, r+N, ... of the masks one process draws for the global batch, and N ranks follow
    one process only in distribution.  Where every rank calls ``tinynet.manual_seed(seed)``
    with the same seed (to build the same initial weights) the ranks' generators stay equal,
    and the j-th sample of every rank gets the same mask; a checkpoint that stores rank 0's
    generator state makes them equal again on resume.  Reseed each rank's generator with a
    seed of its own after the model is built (and after a resume) for independent masks.
    With dropout off, N ranks take the steps of one process (tests/data/test_keyed_augmentation.py).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, num_replicas=None,
                 rank=None, even=True, **loader_options):
        num_replicas, rank = _resolve_replicas(num_replicas, rank)
        if seed is None and num_replicas > 1:
            raise ValueError("DistributedDataLoader needs an explicit seed= (the same on every rank) when "
                             "there is more than one rank, or each would draw its own order")
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         **loader_options)
        self.sampler = DistributedSampler(len(dataset), num_replicas, rank, shuffle=shuffle, seed=self.seed,
                                          drop_last=drop_last, even=even)

    def __len__(self):
        n = self.sampler.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self, epoch=None):
        return self.sampler.indices(self.epoch if epoch is None else epoch)

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.sampler.seed = self.seed

    def __repr__(self):
        return (f"DistributedDataLoader(n={len(self.dataset)}, rank={self.sampler.rank}/"
                f"{self.sampler.num_replicas}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, epoch={self.epoch})")
