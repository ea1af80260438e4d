"""Batches from a dataset: seeded shuffling, background decoding, collation, device move.

Reproducibility
---------------
Epoch ``e`` of a loader with seed ``s`` visits the samples in the order
``permutation(SeedSequence(s, spawn_key=(e, 0, 0)))`` (or ``0..n-1`` without
``shuffle``), and sample ``i`` is transformed with its own generator
``Generator(PCG64(SeedSequence(s, spawn_key=(e, 1, i))))``.  Neither depends on worker
scheduling, so ``num_workers=k`` yields exactly the batches of ``num_workers=0``.
Without an explicit ``seed`` one is drawn from :func:`tinynet.backend.generator`
(``'cpu'``) when the loader is built, so :func:`tinynet.manual_seed` makes it
reproducible.

Each ``iter(loader)`` runs the loader's current epoch and then advances it, so
consecutive ``for`` loops see new orders; :meth:`DataLoader.set_epoch` picks one.
:meth:`DataLoader.state_dict` records the seed, the epoch and -- mid-epoch -- how many
batches were already handed out, so a resumed run continues with the same batches.

The key of sample ``i``'s generator is its index in ``dataset`` -- not its position in
the epoch, in a batch or in a rank's shard -- so the crop, flip and colour noise a sample
gets in epoch ``e`` are the same whatever the number of ranks
(:class:`~tinynet.data.DistributedDataLoader`), of decoding threads, the batch size, or
where a run was interrupted and resumed.  A training loop needs::

    loader.load_state_dict(saved["loader"])     # when resuming (saved: loader.state_dict())
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)                  # optional: iter() advances the epoch itself
        for images, labels in loader:
            ...

Only the transforms' draws are keyed this way; what the model draws in its forward
(dropout masks) comes from :func:`tinynet.backend.generator` (see
:class:`~tinynet.data.DistributedDataLoader` for what that means with several ranks).

Workers
-------
``num_workers > 0`` uses a thread pool: Pillow releases the GIL while decoding and
resizing, and NumPy while copying, so threads overlap JPEG decoding with the training
step without pickling anything.  Up to ``num_workers * prefetch`` batches are prepared
ahead of the one being consumed and they are yielded in order.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import backend
from .dataset import get_sample
from .transforms import to_chw_float

__all__ = ["DataLoader", "default_collate", "sample_rng"]

_ORDER_STREAM = 0
_SAMPLE_STREAM = 1


def sample_rng(seed, epoch, index) -> np.random.Generator:
    """The generator for the transforms of sample ``index`` in ``epoch``."""
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(int(seed), spawn_key=(int(epoch), _SAMPLE_STREAM, int(index)))))


def _order(seed, epoch, n, shuffle):
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(int(seed), spawn_key=(int(epoch), _ORDER_STREAM, 0))))
    return rng.permutation(n).astype(np.int64)


def default_collate(samples):
    """``[(image, label), ...]`` -> ``(float32 (N, ...) contiguous, int64 (N,))``.

    Images may be CHW float arrays (or ``(10, C, h, w)`` ten-crops), PIL images or HWC
    uint8 arrays (converted as by :class:`~tinynet.data.transforms.ToArray`); all must
    have the same shape.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    first = samples[0]
    if not (isinstance(first, (tuple, list)) and len(first) == 2):
        raise TypeError("default_collate expects (image, label) samples; pass collate_fn "
                        "for other sample types")
    image0 = to_chw_float(first[0])
    images = np.empty((len(samples),) + image0.shape, dtype=np.float32)
    labels = np.empty(len(samples), dtype=np.int64)
    for k, (image, label) in enumerate(samples):
        a = image0 if k == 0 else to_chw_float(image)
        if a.shape != image0.shape:
            raise ValueError(f"cannot batch images of shapes {image0.shape} and {a.shape}: "
                             f"end the transform with a fixed-size crop or resize")
        images[k] = a
        labels[k] = label
    return images, labels


def _to_device(batch, device):
    if isinstance(batch, tuple):
        return tuple(_to_device(b, device) for b in batch)
    if isinstance(batch, list):
        return [_to_device(b, device) for b in batch]
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, np.ndarray) or backend.is_gpu_array(batch):
        return backend.to_device(batch, device)
    return batch


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images, labels)`` arrays.

    Parameters
    ----------
    dataset : a :class:`~tinynet.data.Dataset` (or anything indexable with ``len``).
    batch_size, shuffle, drop_last : as usual; ``len(loader)`` is the number of batches.
    seed : order / augmentation seed (``None``: drawn from ``backend.generator('cpu')``).
    num_workers : background threads (0: everything in the calling thread).
    device : ``'cpu'`` or ``'gpu'``; batches are moved with ``backend.to_device``.
    collate_fn : list of samples -> batch (default :func:`default_collate`).
    prefetch : batches prepared ahead per worker.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
                 num_workers=0, device="cpu", collate_fn=None, prefetch=2):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0 or int(prefetch) < 1:
            raise ValueError("num_workers must be >= 0 and prefetch >= 1")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if seed is None:
            seed = int(backend.generator("cpu").integers(0, 2 ** 63 - 1, None))
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.device = backend.normalize_device(device)
        self.collate_fn = collate_fn or default_collate
        self.prefetch = int(prefetch)
        self.epoch = 0            # epoch the next iter() runs
        self._skip = 0            # batches of that epoch already consumed (resume)
        self._active = None       # (epoch, batches yielded) of the running iteration

    # -- sizes and state
    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch):
        """Make the next ``iter()`` run epoch ``epoch``.

        A training loop may call it at the start of every epoch, as with PyTorch's
        ``DistributedSampler.set_epoch``: the epoch picks the order and, with the seed, every
        sample's augmentation.  A mid-epoch position restored by :meth:`load_state_dict` is
        kept when ``epoch`` is the restored epoch, so that the resumed epoch continues at its
        next batch instead of replaying the batches already trained on; any other epoch starts
        at its first batch.
        """
        epoch = int(epoch)
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def state_dict(self):
        """``{'seed', 'epoch', 'batch'}``: where a resumed loader should continue."""
        if self._active is not None:
            epoch, done = self._active
            if done < len(self):
                return {"seed": self.seed, "epoch": epoch, "batch": done}
        return {"seed": self.seed, "epoch": self.epoch, "batch": self._skip}

    def load_state_dict(self, state):
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._skip = int(state.get("batch", 0))
        self._active = None

    def indices(self, epoch=None):
        """The dataset indices of ``epoch`` (default: the next one), in visiting order."""
        return _order(self.seed, self.epoch if epoch is None else epoch,
                      len(self.dataset), self.shuffle)

    def batch_indices(self, epoch=None):
        order = self.indices(epoch)
        return [order[i:i + self.batch_size] for i in range(0, len(self) * self.batch_size,
                                                             self.batch_size)]

    # -- iteration
    def _make_batch(self, epoch, idx):
        samples = [get_sample(self.dataset, int(i), sample_rng(self.seed, epoch, i))
                   for i in idx]
        return self.collate_fn(samples)

    def __iter__(self):
        epoch, skip = self.epoch, self._skip
        self.epoch, self._skip = epoch + 1, 0
        batches = self.batch_indices(epoch)[skip:]
        self._active = [epoch, skip]
        return self._iterate(epoch, batches)

    def _iterate(self, epoch, batches):
        state = self._active
        if self.num_workers == 0:
            for idx in batches:
                batch = self._make_batch(epoch, idx)
                state[1] += 1
                yield _to_device(batch, self.device)
            return
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="tinynet-data")
        pending = []
        try:
            ahead = self.num_workers * self.prefetch
            it = iter(batches)
            for idx in it:
                pending.append(pool.submit(self._make_batch, epoch, idx))
                if len(pending) >= ahead:
                    break
            while pending:
                batch = pending.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(self._make_batch, epoch, nxt))
                state[1] += 1
                yield _to_device(batch, self.device)
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    @property
    def skipped(self) -> int:
        """Unreadable files the dataset met so far."""
        return getattr(self.dataset, "skipped", 0)

    def __repr__(self):
        return (f"DataLoader(n={len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, "
                f"num_workers={self.num_workers}, device={self.device!r})")
